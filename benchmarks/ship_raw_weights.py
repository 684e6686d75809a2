"""Write a training run's raw (optimizer) weights at one checkpoint as a model folder.

The trainer's EMA does not feed back into training and its randomness is a function of seed and
step, so a checkpoint's raw weights are exactly what the same command with ``--ema-decay 0`` (the
"average" is the latest weights) saves at that step. This writes that folder without training
again; the shipped fashion-mnist model was made so:

    python benchmarks/ship_raw_weights.py runs/fashion-mnist 7500 src/ddim/pretrained/fashion-mnist
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

from safetensors.torch import load_file

import ddim
from ddim.training import TrainConfig, _Run, _save_model_folder


def main(run: str, step: str, out: str) -> None:
    run_path, step_n = Path(run), int(step)
    ckpt = run_path / "checkpoints" / f"step-{step_n:07d}"
    if json.loads((ckpt / "step.json").read_text())["step"] != step_n:
        raise SystemExit(f"{ckpt} is not the checkpoint of step {step_n}")
    saved = json.loads((run_path / "train_config.json").read_text())
    cfg = TrainConfig(**saved)
    cfg.ema_decay, cfg.steps, cfg.output = 0.0, step_n, out
    m = ddim.load(run_path)
    m.model.net.load_state_dict(load_file(ckpt / "model.safetensors"))
    _save_model_folder(Path(out), m.model.net, _Run.of(cfg), step_n)
    print(f"wrote {out}: raw weights of {ckpt}, config {json.dumps(asdict(cfg))[:80]}...")


if __name__ == "__main__":
    main(*sys.argv[1:4])
