"""Tiny random-weight diffusers pipelines built locally, without downloads: for tests, docs and benchmarks.

``tiny_text_pipeline()`` is a Stable Diffusion pipeline in miniature: a ``UNet2DConditionModel`` on 4x8x8
latents, an ``AutoencoderKL`` for 3x16x16 images, a ``CLIPTextModel`` made from a ``CLIPTextConfig`` and a
``CLIPTokenizer`` over a character vocabulary written to a folder. Its outputs mean nothing; its
arithmetic is the real pipeline's. Needs ``transformers`` (``pip install ".[test]"``).
"""

from __future__ import annotations

import json
import string
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["tiny_text_pipeline", "write_char_vocabulary"]


def write_char_vocabulary(folder: str | Path) -> Path:
    """A CLIP BPE vocabulary of single printable characters (no merges) in ``folder``: vocab.json, merges.txt."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokens = ["<|startoftext|>", "<|endoftext|>", "!"]
    for c in string.ascii_lowercase + string.digits + string.punctuation:
        tokens += [c, c + "</w>"]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return folder


def tiny_text_pipeline(seed: int = 0, scheduler: Any = None, dtype: torch.dtype = torch.float32):
    """A random-weight StableDiffusionPipeline (latents 4x8x8, images 3x16x16), deterministic for ``seed``."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=4,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
    )
    text = CLIPTextModel(CLIPTextConfig(vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                        max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1))
    with tempfile.TemporaryDirectory() as folder:
        write_char_vocabulary(folder)
        tokenizer = CLIPTokenizer(f"{folder}/vocab.json", f"{folder}/merges.txt", model_max_length=77)
    if scheduler is None:
        scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False,
                                  steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe if dtype == torch.float32 else pipe.to(dtype=dtype)
