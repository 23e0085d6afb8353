import math

import pytest
import torch

from pyro_ebm import Energy, LatentEnergy, as_energy
from pyro_ebm._validation import check_beta, check_finite, check_positive_int
from pyro_ebm.energy import check_energy_output


class Quadratic(Energy):
    def __init__(self):
        super().__init__(event_shape=(2,))
        self.center = torch.nn.Parameter(torch.tensor([1.0, -1.0]))

    def forward(self, y, x=None):
        shift = 0.0 if x is None else x
        return 0.5 * ((y - self.center - shift) ** 2).sum(-1)


def test_subclass_energy_values_and_parameters():
    F = Quadratic()
    y = torch.randn(4, 3, 2)
    expected = 0.5 * ((y - F.center) ** 2).sum(-1)
    assert torch.allclose(F.energy(y), expected)
    assert F.energy(y).shape == (4, 3)
    assert [n for n, _ in F.named_parameters()] == ["center"]
    # conditioning broadcasts against y's batch
    x = torch.randn(3, 2)
    assert torch.allclose(F.energy(y, x), 0.5 * ((y - F.center - x) ** 2).sum(-1))


def test_as_energy_wraps_callables_and_modules():
    lin = torch.nn.Linear(3, 1)
    F = as_energy(lambda y: lin(y).squeeze(-1), event_shape=(3,))
    assert F.energy(torch.zeros(5, 3)).shape == (5,)
    G = as_energy(lin, event_shape=(3,))
    assert len(list(G.parameters())) == 2
    assert as_energy(F) is F
    E = as_energy(lambda y, z, x: (y - z - x) ** 2, latent_shape=())
    assert E.has_latent and E.energy(torch.zeros(4), torch.ones(4), torch.ones(())).tolist() == [4.0] * 4


def test_shape_contract_errors_name_the_problem():
    summed = as_energy(lambda y: (y**2).sum(), event_shape=(2,))
    with pytest.raises(ValueError, match=r"shape \(4,\).*got shape \(\).*sum over the batch"):
        summed.energy(torch.zeros(4, 2))
    unreduced = as_energy(lambda y: y**2, event_shape=(2,))
    with pytest.raises(ValueError, match="reduce over the event"):
        unreduced.energy(torch.zeros(4, 2))
    F = as_energy(lambda y: (y**2).sum(-1), event_shape=(2,))
    with pytest.raises(ValueError, match=r"y must have shape batch \+ event_shape"):
        F.energy(torch.zeros(4, 3))
    with pytest.raises(TypeError, match="y must be a torch.Tensor"):
        F.energy([1.0, 2.0])
    with pytest.raises(TypeError, match="must return a torch.Tensor"):
        as_energy(lambda y: 1.0).energy(torch.zeros(3))
    with pytest.raises(ValueError, match="event_shape .* disagrees"):
        as_energy(F, event_shape=(3,))
    with pytest.raises(TypeError, match="energy must be callable"):
        as_energy(3.0)
    with pytest.raises(TypeError, match="needs z"):
        as_energy(lambda y, z: y + z, latent_shape=()).energy(torch.zeros(2))


def test_nan_energy_is_reported_with_its_location():
    def bad(y):
        out = y.sum(-1)
        out[2] = math.nan
        return out

    with pytest.raises(ValueError, match=r"1 of 5 entries .*index \(2,\): NaN"):
        as_energy(bad, event_shape=(2,)).energy(torch.zeros(5, 2))
    # +inf is a legitimate zero-probability energy; -inf is not
    check_energy_output(torch.tensor([0.0, math.inf]), (2,))
    with pytest.raises(ValueError, match="-inf"):
        check_energy_output(torch.tensor([0.0, -math.inf]), (2,))


@pytest.mark.parametrize("beta", [0.0, -1.0, math.nan, torch.tensor([1.0, -0.5]), torch.tensor(math.nan)])
def test_bad_beta(beta):
    with pytest.raises(ValueError, match="beta must be > 0"):
        check_beta(beta)


def test_beta_types_and_inf():
    with pytest.raises(TypeError, match="beta must be a positive number"):
        check_beta("1")
    with pytest.raises(TypeError, match="beta must be a positive number"):
        check_beta(True)
    with pytest.raises(ValueError, match="zero temperature"):
        check_beta(math.inf)
    assert check_beta(math.inf, allow_inf=True) == math.inf
    assert check_beta(2) == 2.0


def test_small_validators():
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        check_positive_int(0, "steps")
    with pytest.raises(TypeError, match="steps must be an integer"):
        check_positive_int(2.5, "steps")
    with pytest.raises(ValueError, match=r"2 of 3 entries"):
        check_finite(torch.tensor([1.0, math.inf, math.nan]), "w")


def test_latent_energy_batch_broadcasting():
    class E(LatentEnergy):
        def forward(self, y, z, x=None):
            return ((y - z) ** 2).sum(-1)

    e = E(event_shape=(2,), latent_shape=(2,))
    assert e.energy(torch.zeros(3, 2), torch.zeros(4, 1, 2)).shape == (4, 3)
    with pytest.raises(ValueError, match="must broadcast"):
        e.energy(torch.zeros(3, 2), torch.zeros(4, 2))
