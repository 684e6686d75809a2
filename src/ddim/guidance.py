"""Classifier-free guidance (Ho & Salimans 2022) as a model wrapper.

A class-conditional model trained with label dropout also predicts without a label (the "null"
class). Guidance with scale w mixes the two predictions,

    out = out_uncond + w * (out_cond - out_uncond),

w = 1 being the conditional model itself and w = 0 the unconditional one. Since eps, x0 and v
predictions are affine in each other at a fixed x_t with the same coefficients for both calls,
mixing the raw output is the same as mixing eps. Both predictions come from one batched call.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["Guided"]


class Guided(nn.Module):
    """``model(x, t)`` for a fixed set of labels [B] at guidance ``scale``; wraps a ``Denoiser``."""

    def __init__(self, model: nn.Module, labels: Tensor, scale: float, null_class: int | None):
        super().__init__()
        if scale != 1 and null_class is None:
            raise ValueError("guidance needs a model trained with label dropout (ddim train --conditional); this one has no unconditional mode")
        self.model, self.labels, self.scale, self.null_class = model, labels, float(scale), null_class

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        labels = self.labels.to(x.device)
        if len(labels) != len(x):
            raise ValueError(f"got {len(labels)} labels for a batch of {len(x)}")
        if self.scale == 1:
            return self.model(x, t, class_labels=labels)
        both = self.model(torch.cat([x, x]), torch.cat([t, t]), class_labels=torch.cat([labels, torch.full_like(labels, self.null_class)]))
        cond, uncond = both.chunk(2)
        return uncond + self.scale * (cond - uncond)
