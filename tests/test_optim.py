"""The optimiser and schedule every task builds from `optim`, and their errors."""

import pytest
import torch

from interp.errors import ConfigError
from interp.tasks.optim import build_optimizers


def test_the_linear_schedule_falls_from_the_peak_to_min_lr_ratio_at_the_last_step():
    p = torch.nn.Parameter(torch.zeros(1))
    built = build_optimizers([p], {"name": "SGD", "lr": 0.2, "momentum": 0.5, "schedule": "linear",
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
    ({"name": "SGD", "lr": 0.1, "momentum": -0.5}, "Invalid momentum value.*Fix:"),
    ({"name": "Adam", "lr": -1.0}, "Invalid learning rate.*Fix:"),
    ({"name": "SGD", "lr": 0.1, "betas": [0.9, 0.99]}, "betas.*Remove or rename that field for SGD"),
    ({"name": "Sophia", "lr": 0.1}, "not a torch.optim optimizer"),
    ({"name": "Adam", "lr": 0.1, "schedule": "step"}, "choose one of constant, cosine, linear"),
])
def test_bad_optimiser_settings_are_one_config_error(optim, needle):
    with pytest.raises(ConfigError, match=needle):
        build_optimizers([torch.nn.Parameter(torch.zeros(1))], optim, 10)


@pytest.mark.parametrize("override, needle", [("optim.lr=null", "optim.lr=null: this task trains its model"),
                                              ("optim.schedule=null", "optim.schedule=null: this task has no recipe")])
def test_a_model_task_refuses_the_null_settings_only_a_dictionary_recipe_fills(override, needle):
    from hydra import compose, initialize_config_dir
    from conftest import REPO

    from interp.registry import task_kind

    with initialize_config_dir(str(REPO / "conf"), version_base=None):
        cfg = compose("train", overrides=["model=transformer_1l", override])
    with pytest.raises(ConfigError, match=f"{needle}.*Fix:"):
        task_kind(cfg.task.kind).build(cfg, {"choices": {"model": "transformer_1l"}})
