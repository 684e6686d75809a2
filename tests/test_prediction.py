import pytest
import torch

from ddim.prediction import PREDICTIONS, eps_x0_to, to_eps_x0


@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("t", [0, 1, 250, 999])
def test_round_trip_every_type_every_t(linear, prediction, t, gen):
    """target(eps, x0) -> (eps, x0) recovers both for every parameterisation at every t."""
    x0 = torch.randn(4, 3, 5, generator=gen(1), dtype=torch.float64)
    eps = torch.randn(4, 3, 5, generator=gen(2), dtype=torch.float64)
    ab = linear.alpha_bar(t)
    x_t = ab**0.5 * x0 + (1 - ab) ** 0.5 * eps
    eps_back, x0_back = to_eps_x0(eps_x0_to(eps, x0, ab, prediction), x_t, ab, prediction)
    torch.testing.assert_close(eps_back, eps, rtol=1e-9, atol=1e-9 / ab**0.5)
    torch.testing.assert_close(x0_back, x0, rtol=1e-9, atol=1e-9 / ab**0.5)


def test_v_is_salimans_ho_definition():
    eps, x0, ab = torch.tensor([1.0]), torch.tensor([2.0]), 0.36
    assert eps_x0_to(eps, x0, ab, "v").item() == pytest.approx(0.6 * 1.0 - 0.8 * 2.0)


def test_eps_prediction_at_zero_snr_is_refused():
    with pytest.raises(ValueError, match="zero terminal SNR"):
        to_eps_x0(torch.zeros(1), torch.zeros(1), 0.0, "eps")


def test_unknown_prediction_type():
    with pytest.raises(ValueError, match="unknown prediction type 'epsilon'; choose one of eps, x0, v"):
        to_eps_x0(torch.zeros(1), torch.zeros(1), 0.5, "epsilon")
