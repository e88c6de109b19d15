"""Datasets (as LightningDataModules) and the offline GPT-2 BPE tokenizer."""

from interp.data.arithmetic import ground_truth
from interp.data.datamodule import DATASETS, build_datamodule
from interp.data.induction import repeated_random_tokens
from interp.data.tokenizer import Tokenizer, load_gpt2_bpe_ranks

__all__ = ["DATASETS", "Tokenizer", "build_datamodule", "ground_truth", "load_gpt2_bpe_ranks", "repeated_random_tokens"]
