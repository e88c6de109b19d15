"""`build_datamodule(data_cfg, seed)`: the one entry point train.py uses."""

from __future__ import annotations

from typing import Mapping

from omegaconf import DictConfig

from interp.data.arithmetic import ArithmeticConfig, ArithmeticDataModule
from interp.data.base import BaseDataModule, parse_config
from interp.data.code import CodeConfig, CodeDataModule
from interp.data.hf import HFConfig, HFDataModule
from interp.data.induction import InductionConfig, InductionDataModule
from interp.data.mix import MixConfig, MixDataModule
from interp.data.qa import QAConfig, QADataModule
from interp.data.synthetic import SyntheticConfig, SyntheticDataModule
from interp.data.text_files import TextFilesConfig, TextFilesDataModule
from interp.errors import ConfigError

# name -> (config schema, datamodule); the name is also the conf/data/<name>.yaml file.
DATASETS = {
    "code": (CodeConfig, CodeDataModule),
    "text_files": (TextFilesConfig, TextFilesDataModule),
    "hf": (HFConfig, HFDataModule),
    "induction": (InductionConfig, InductionDataModule),
    "qa": (QAConfig, QADataModule),
    "arithmetic": (ArithmeticConfig, ArithmeticDataModule),
    "mix": (MixConfig, MixDataModule),
    "synthetic": (SyntheticConfig, SyntheticDataModule),
}


def build_datamodule(data_cfg: Mapping | DictConfig, seed: int) -> BaseDataModule:
    """A LightningDataModule for the `data` config group; all randomness derives from `seed`."""
    name = data_cfg.get("name")
    if name not in DATASETS:
        raise ConfigError(f"Unknown dataset data.name={name!r}. Valid names: {', '.join(DATASETS)} (data=<name>).")
    schema, module = DATASETS[name]
    return module(parse_config(schema, data_cfg), seed)
