"""Train a model: `python train.py [experiment=<preset>] [overrides]`. See README.md."""

import sys

import hydra
from omegaconf import DictConfig

from interp.errors import InterpError


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> None:
    import wandb

    from interp.training import train

    try:
        train(cfg)
    except InterpError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    finally:
        wandb.finish()  # each job of a multirun gets its own W&B run


if __name__ == "__main__":
    main()
