"""Train a model: `python train.py [experiment=<preset>] [overrides]`. See README.md."""

import interp.hugepages  # noqa: F401  (first: huge pages for large tensors, set before torch loads)
import sys

import hydra
from omegaconf import DictConfig

from interp.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    import wandb

    from interp.training import train

    try:
        train(cfg)
    finally:
        wandb.finish()  # each job of a multirun gets its own W&B run


if __name__ == "__main__":
    from interp.cli import check_override_syntax

    check_override_syntax(sys.argv)
    main()
