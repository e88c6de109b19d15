"""`induction`: repeated random tokens, the Olsson et al. (2022) induction-head test.

Example (seq_len+1 tokens): [eot] + noise_a + r + r (+ r ...) + noise_b, with r
uniform random tokens of random length L, `copies` copies of it, and noise_a of
random length. Only a model that copies from an earlier r can predict the
later ones; more copies give a denser learning signal for the same compute.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from interp.data.base import ArrayDataset, BaseDataModule, TextDataConfig, lm_batch
from interp.data.tokenizer import tokenizer_for
from interp.errors import ConfigError


@dataclass
class InductionConfig(TextDataConfig):
    name: str = "induction"
    kind: str = "lm"
    vocab_size: int = 8192  # model d_vocab; eot = vocab_size-1 is the BOS token
    seq_len: int = 128
    token_low: int = 256  # skip the byte tokens
    token_high: int = 8191  # exclusive; must stay below eot
    min_repeat: int = 8
    max_repeat: int = 48  # capped at seq_len // copies
    copies: int = 2  # copies of r in a row (>= 2)
    noise: str = "skip_bigram"  # skip_bigram | skip_copy | uniform: how the tokens around the repeats are drawn
    branching: int = 4  # skip_bigram noise: possible tokens two positions after each token
    copy_prob: float = 0.5  # skip_copy noise: chance that x[t+1] repeats x[t-1]
    num_train: int = 200_000
    num_val: int = 512
    batch_size: int = 32
    loss_on: str = "all"  # all | repeat (only the copies after the first)


def repeated_random_tokens(
    n_batch: int, length: int, token_low: int, token_high: int, seed: int, bos_id: int
) -> torch.Tensor:
    """[n_batch, 1 + 2*length] = [bos] + r + r; for induction / previous-token scores."""
    g = torch.Generator().manual_seed(seed)
    r = torch.randint(token_low, token_high, (n_batch, length), generator=g)
    return torch.cat([torch.full((n_batch, 1), bos_id), r, r], dim=1)


def _mix(h: np.ndarray) -> np.ndarray:
    """A fixed 32-bit integer hash (murmur3's finaliser), vectorised."""
    h = (h ^ (h >> 16)) * 0x85EBCA6B & 0xFFFFFFFF
    h = (h ^ (h >> 13)) * 0xC2B2AE35 & 0xFFFFFFFF
    return h ^ (h >> 16)


def skip_bigram_noise(cfg: InductionConfig, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Tokens where x[t+1] is one of `branching` tokens fixed by x[t-1] (a hash, so train and
    val share the rule) and independent of x[t].

    Why: on uniform noise a previous-token head is useless on its own, so the two-head
    induction circuit has no gradient to start from and training plateaus. Here the
    previous token predicts the next one by itself (as in natural text), so a
    previous-token head forms first and the induction head builds on it.
    """
    n, length = shape
    span = cfg.token_high - cfg.token_low
    out = np.empty(shape, dtype=np.int64)
    out[:, :2] = rng.integers(0, span, size=(n, 2))
    choice = rng.integers(0, cfg.branching, size=shape)
    for t in range(2, length):
        key = out[:, t - 2] * cfg.branching + choice[:, t]
        out[:, t] = _mix(key.astype(np.uint64)).astype(np.int64) % span
    return out + cfg.token_low


def skip_copy_noise(cfg: InductionConfig, rng: np.random.Generator, tokens: np.ndarray) -> np.ndarray:
    """Uniform tokens where, with probability copy_prob, x[t+1] repeats x[t-1]: a
    previous-token head that copies its token is useful on its own (see skip_bigram_noise)."""
    copy = rng.random(tokens.shape) < cfg.copy_prob
    for t in range(2, tokens.shape[1]):
        tokens[:, t] = np.where(copy[:, t], tokens[:, t - 2], tokens[:, t])
    return tokens


def generate(cfg: InductionConfig, n: int, seed: int, bos_id: int) -> dict[str, np.ndarray]:
    """Vectorised: n examples `seq` [n, seq_len+1] (+ `loss_mask` for loss_on=repeat),
    plus the repeat's `start` (index of r's first copy) and `length` for analyses."""
    rng = np.random.default_rng(seed)
    T = cfg.seq_len
    max_rep = min(cfg.max_repeat, T // cfg.copies)
    length = rng.integers(cfg.min_repeat, max_rep + 1, size=n)
    span = cfg.copies * length
    start = 1 + (rng.random(n) * (T - span + 1)).astype(np.int64)  # noise_a length in [0, T-span]
    uniform = rng.integers(cfg.token_low, cfg.token_high, size=(n, T + 1))
    if cfg.noise == "skip_bigram":
        seq = skip_bigram_noise(cfg, rng, (n, T + 1))
    elif cfg.noise == "skip_copy":
        seq = skip_copy_noise(cfg, rng, uniform.copy())
    else:
        seq = uniform
    pos = np.arange(T + 1)
    first = (pos >= start[:, None]) & (pos < (start + length)[:, None])
    seq = np.where(first, uniform, seq).astype(np.uint16)  # r itself is uniform random; vocab <= 50257
    seq[:, 0] = bos_id
    later = (pos >= (start + length)[:, None]) & (pos < (start + span)[:, None])  # copies 2..copies
    first_copy = start[:, None] + (pos - start[:, None]) % length[:, None]
    seq = np.take_along_axis(seq, np.where(later, first_copy, pos), axis=1)  # copy r into place
    out = {"seq": seq, "start": start, "length": length}
    if cfg.loss_on == "repeat":
        out["loss_mask"] = later[:, 1:]  # target t is token t+1
    return out


class InductionDataModule(BaseDataModule):
    kind = "lm"

    def __init__(self, cfg: InductionConfig, seed: int):
        super().__init__(cfg, seed)
        c = cfg
        problems = [
            (c.loss_on not in ("all", "repeat"), f"data.loss_on={c.loss_on!r} must be 'all' or 'repeat'"),
            (not 0 <= c.token_low < c.token_high <= c.vocab_size - 1,
             f"need 0 <= token_low < token_high <= vocab_size-1={c.vocab_size - 1} (eot is reserved), "
             f"got token_low={c.token_low}, token_high={c.token_high}"),
            (c.copies < 2, f"need copies >= 2, got {c.copies}"),
            (c.noise not in ("skip_bigram", "skip_copy", "uniform"),
             f"data.noise={c.noise!r} must be 'skip_bigram', 'skip_copy' or 'uniform'"),
            (not 0 <= c.copy_prob <= 1, f"need 0 <= copy_prob <= 1, got {c.copy_prob}"),
            (c.branching < 1, f"need branching >= 1, got {c.branching}"),
            (c.copies >= 2 and not 1 <= c.min_repeat <= min(c.max_repeat, c.seq_len // c.copies),
             f"need 1 <= min_repeat <= min(max_repeat, seq_len//copies), got min_repeat={c.min_repeat}, "
             f"max_repeat={c.max_repeat}, seq_len={c.seq_len}, copies={c.copies}"),
            (c.num_train < c.batch_size or c.num_val < 1, "need num_train >= batch_size and num_val >= 1"),
        ]
        if msgs := [m for bad, m in problems if bad]:
            raise ConfigError("Invalid induction data config: " + "; ".join(msgs) + ". Fix these data.* overrides.")
        self.tokenizer = tokenizer_for(c)  # random ids, but analyses want token labels
        self.seq_len = c.seq_len

    def build(self):
        seeds = np.random.SeedSequence([self.seed, 0x1D]).spawn(2)  # independent train/val streams
        train, val = (
            generate(self.cfg, n, s, self.tokenizer.eot_id)
            for n, s in zip((self.cfg.num_train, self.cfg.num_val), seeds)
        )
        self.summary.update(train_examples=len(train["seq"]), val_examples=len(val["seq"]))
        keep = lambda d: {k: d[k] for k in ("seq", "loss_mask") if k in d}  # noqa: E731
        return ArrayDataset(keep(train), lm_batch), ArrayDataset(keep(val), lm_batch), None
