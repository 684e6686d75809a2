"""Training and inference throughput of candidate 28x28 UNets on this machine (fp32, eager).

One Adam step (forward, backward, update) on random data per timed iteration, 2 warm-up steps,
3 timed; inference is two forward passes under no_grad. Widths, attention placement and layers per
block are the knobs; ``mid-attn only`` means no attention in the down/up blocks (diffusers' mid
block at 7x7 always has one).

    python benchmarks/unet_throughput.py
"""

from __future__ import annotations

import time

import torch

from ddim.models import _unet

CONFIGS = {
    "mnist preset (32,64,128) attn 7x7 L1": _unet(28, 1, (32, 64, 128), (False, False, True), 1, 16),
    "(32,64,128) L1 mid-attn only": _unet(28, 1, (32, 64, 128), (False, False, False), 1, 16),
    "(32,64,64) L1 mid-attn only [fashion]": _unet(28, 1, (32, 64, 64), (False, False, False), 1, 16),
    "(24,48,96) L1 mid-attn only": _unet(28, 1, (24, 48, 96), (False, False, False), 1, 8),
    "(32,64,128) L2 mid-attn only": _unet(28, 1, (32, 64, 128), (False, False, False), 2, 16),
    "(48,96,192) L1 mid-attn only": _unet(28, 1, (48, 96, 192), (False, False, False), 1, 16),
}


def main() -> None:
    from diffusers import UNet2DModel

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32")
    for name, config in CONFIGS.items():
        torch.manual_seed(0)
        net = UNet2DModel(**config)
        opt = torch.optim.Adam(net.parameters(), 1e-3)
        params = sum(p.numel() for p in net.parameters())
        for batch in (64, 128):
            x, t = torch.randn(batch, 1, 28, 28), torch.randint(1000, (batch,))
            for i in range(5):
                if i == 2:
                    start = time.perf_counter()
                loss = (net(x, t).sample - x).pow(2).mean()
                loss.backward()
                opt.step()
                opt.zero_grad()
            step = (time.perf_counter() - start) / 3
            with torch.no_grad():
                net.eval()
                start = time.perf_counter()
                net(x, t)
                net(x, t)
                infer = (time.perf_counter() - start) / 2
                net.train()
            print(f"| {name} | {params / 1e6:.2f}M | {batch} | {step:.2f} | {batch / step:.0f} | {batch / infer:.0f} |", flush=True)


if __name__ == "__main__":
    main()
