"""Interpolation between latents: spherical (the DDIM paper's choice for Gaussian x_T) and linear."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["slerp", "lerp"]


def slerp(z0: Tensor, z1: Tensor, alphas: Tensor | list[float]) -> Tensor:
    """Spherical interpolation (DDIM paper sec. 5.3): sin((1-a)th)/sin(th) z0 + sin(a th)/sin(th) z1.

    ``z0``, ``z1`` are single latents of the same shape; returns [len(alphas), *shape]. The angle
    th is between the flattened latents; nearly parallel latents fall back to linear interpolation.
    """
    if z0.shape != z1.shape:
        raise ValueError(f"latents must have the same shape, got {tuple(z0.shape)} and {tuple(z1.shape)}")
    a = torch.as_tensor(alphas, dtype=torch.float64).reshape((-1,) + (1,) * z0.dim())
    u, v = z0.double(), z1.double()
    cos = (u * v).sum() / (u.norm() * v.norm()).clamp(min=1e-300)
    theta = torch.arccos(cos.clamp(-1, 1))
    if theta.abs() < 1e-6:
        return lerp(z0, z1, alphas)
    out = (torch.sin((1 - a) * theta) * u + torch.sin(a * theta) * v) / torch.sin(theta)
    return out.to(z0.dtype)


def lerp(z0: Tensor, z1: Tensor, alphas: Tensor | list[float]) -> Tensor:
    """Linear interpolation (1 - a) z0 + a z1, [len(alphas), *shape]."""
    a = torch.as_tensor(alphas, dtype=torch.float64).reshape((-1,) + (1,) * z0.dim())
    return ((1 - a) * z0.double() + a * z1.double()).to(z0.dtype)
