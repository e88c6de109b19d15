"""The optimisers and schedules every task builds from `optim`: torch's, interp's Signum, and their errors."""

import pytest
import torch

from interp.errors import ConfigError
from interp.tasks.optim import build_optimizers
from interp.tasks.signum import Signum


def test_signum_moves_every_weight_by_lr_along_the_sign_of_its_gradients_running_mean():
    p = torch.nn.Parameter(torch.tensor([1.0, 1.0, 1.0]))
    opt = Signum([p], lr=0.1, momentum=0.9)
    expected, m = p.detach().clone(), torch.zeros(3)
    for grad in ([2.0, -1e-6, 0.0], [-0.5, -3.0, 0.0], [-0.5, 5.0, 0.0]):
        p.grad = torch.tensor(grad)
        opt.step()
        m = 0.9 * m + 0.1 * torch.tensor(grad)
        expected -= 0.1 * torch.sign(m)
        assert torch.allclose(p.detach(), expected)
    # the first weight's gradient turned negative at step 2, yet its running mean stayed positive: it kept
    # moving down; the second turned back only when its mean did; a zero gradient never moves a weight
    assert p.detach().tolist() == pytest.approx([0.7, 1.1, 1.0])


def test_signum_without_momentum_is_plain_sign_descent_and_decays_weights():
    p = torch.nn.Parameter(torch.tensor([2.0, -2.0]))
    opt = Signum([p], lr=0.5, momentum=0.0, weight_decay=0.1)
    p.grad = torch.tensor([1e-8, -7.0])
    opt.step()
    assert p.detach().tolist() == pytest.approx([2.0 * 0.95 - 0.5, -2.0 * 0.95 + 0.5])


def test_the_linear_schedule_falls_from_the_peak_to_min_lr_ratio_at_the_last_step():
    p = torch.nn.Parameter(torch.zeros(1))
    built = build_optimizers([p], {"name": "Signum", "lr": 0.2, "momentum": 0.5, "schedule": "linear",
                                   "min_lr_ratio": 0.25, "warmup_steps": 2}, 10)
    opt, sched = built["optimizer"], built["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(11):
        lrs.append(opt.param_groups[0]["lr"])
        p.grad = torch.ones(1)
        opt.step()
        sched.step()
    assert lrs[:3] == pytest.approx([0.1, 0.2, 0.2])                 # warm-up, then the peak
    assert lrs[6] == pytest.approx(0.2 * (1 - 0.75 * 4 / 8))          # linear in between
    assert lrs[10] == pytest.approx(0.05)                              # min_lr_ratio at the end


@pytest.mark.parametrize("optim, needle", [
    ({"name": "Signum", "lr": 0.1, "momentum": 1.5}, "0 <= momentum < 1.*Fix:"),
    ({"name": "Adam", "lr": -1.0}, "Invalid learning rate.*Fix:"),
    ({"name": "Signum", "lr": 0.1, "betas": [0.9, 0.99]}, "betas.*Remove or rename that field for Signum"),
    ({"name": "Sophia", "lr": 0.1}, "not a torch.optim optimizer.*Signum"),
    ({"name": "Adam", "lr": 0.1, "schedule": "step"}, "choose one of constant, cosine, linear"),
])
def test_bad_optimiser_settings_are_one_config_error(optim, needle):
    with pytest.raises(ConfigError, match=needle):
        build_optimizers([torch.nn.Parameter(torch.zeros(1))], optim, 10)
