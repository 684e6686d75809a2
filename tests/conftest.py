import pytest
import torch

import ddim


@pytest.fixture(scope="session")
def linear():
    return ddim.NoiseSchedule.linear(1000)


@pytest.fixture(scope="session")
def mixture():
    return ddim.analytic.GaussianMixture.random(dim=6, modes=4, seed=3)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)
