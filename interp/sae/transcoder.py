"""Transcoders: a dictionary that reads one hook and predicts another (Dunefsky et al. 2024), optionally
with a linear skip path `W_skip x` (skip transcoders, Paulo et al. 2025).

Training: any SAELens training SAE becomes a transcoder by `transcoding(cls)`. Its step gets rows
[x | y] (input hook beside target hook, interp.sae.sites); the SAE encodes x and SAELens's own
`training_forward_pass` measures every loss against y, so the MSE, TopK's AuxK on the residual
y - ŷ, JumpReLU's and BatchTopK's terms are SAELens's, computed for the transcoder's target.
The fast steps (sae.sparse_decode for topk/batchtopk, sae.fused for standard) are mixed in the
same way, `transcoding(fast class)`: they read x through `encoder_input` and do the same maths
(skip path and its gradient included) in their own autograd function.

Saving: as SAELens's inference transcoders, so `sae_lens.SAE.load_from_disk` returns them:
standard → `transcoder`, jumprelu and batchtopk → `jumprelu_transcoder`, with `skip_` variants.
SAELens has no TopK transcoder; `topk_transcoder` / `topk_skip_transcoder` are registered with
SAELens's registry here (TopK encode, transcoder decode), so loading them needs `import interp.sae`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cache
from typing import Any

import torch
from sae_lens import register_sae_class
from sae_lens.saes.sae import TrainStepInput
from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig
from torch import nn

# The inference architecture SAELens saves each training architecture as -> its transcoder class.
TRANSCODER_OF = {"standard": "transcoder", "jumprelu": "jumprelu_transcoder", "topk": "topk_transcoder"}
SKIP_OF = {"transcoder": "skip_transcoder", "jumprelu_transcoder": "jumprelu_skip_transcoder",
           "topk_transcoder": "topk_skip_transcoder"}
TRAINABLE = ("standard", "topk", "batchtopk", "jumprelu")   # SAELens has no gated or Matryoshka transcoder


class TranscodingMixin:
    """Before a SAELens training SAE class: encode the input half of each row, reconstruct the other."""

    def init_transcoder(self, skip: bool) -> None:
        self._input: torch.Tensor | None = None
        if skip:   # zero at first: the transcoder starts as a plain one (as SAELens's SkipTranscoder)
            self.W_skip = nn.Parameter(torch.zeros(self.cfg.d_in, self.cfg.d_in, dtype=self.W_enc.dtype,
                                                   device=self.W_enc.device))

    def training_forward_pass(self, step_input: TrainStepInput):
        d_in = self.cfg.d_in
        self._input = step_input.sae_in[:, :d_in]
        try:
            return super().training_forward_pass(dataclasses.replace(step_input, sae_in=step_input.sae_in[:, d_in:]))
        finally:
            self._input = None

    def encode_with_hidden_pre(self, sae_in: torch.Tensor):
        return super().encode_with_hidden_pre(self._input if self._input is not None else sae_in)

    def decode(self, feature_acts: torch.Tensor) -> torch.Tensor:
        out = super().decode(feature_acts)
        if getattr(self, "W_skip", None) is not None and self._input is not None:
            out = out + self._input @ self.W_skip.T
        return out


def encoder_input(sae, sae_in: torch.Tensor) -> torch.Tensor:
    """What `sae`'s encoder reads in a training step given `sae_in`: a transcoder's input half (set by
    TranscodingMixin for the step, `sae_in` then being its target), else `sae_in` itself. For the fast
    steps (interp.sae.fused_topk, fused_standard), which take both."""
    x = getattr(sae, "_input", None)
    return sae_in if x is None else x.to(sae.dtype).contiguous()   # a view of [x | y]; the sparse step gathers its rows


@cache
def transcoding(sae_cls: type) -> type:
    """`sae_cls` (a SAELens training SAE class) trained as a transcoder."""
    return type(f"Transcoding{sae_cls.__name__}", (TranscodingMixin, sae_cls), {})


def inference_config(cfg_dict: dict[str, Any], target: str, skip: bool) -> dict[str, Any]:
    """A SAELens inference SAE's config dict turned into its transcoder's."""
    arch = TRANSCODER_OF[cfg_dict["architecture"]]
    metadata = dict(cfg_dict.get("metadata") or {}, hook_name_out=target)
    return {**cfg_dict, "architecture": SKIP_OF[arch] if skip else arch, "d_out": cfg_dict["d_in"],
            "apply_b_dec_to_input": False, "metadata": metadata}


@dataclass
class TopKTranscoderConfig(TopKSAEConfig):
    d_out: int = 768

    @classmethod
    def architecture(cls) -> str:
        return "topk_transcoder"

    def __post_init__(self):
        if self.apply_b_dec_to_input:
            raise ValueError("apply_b_dec_to_input is not supported for transcoders")
        super().__post_init__()


class TopKTranscoder(TopKSAE):
    """SAELens's TopK encode; b_dec is the target's bias, never subtracted from the input."""

    cfg: TopKTranscoderConfig

    @property
    def d_out(self) -> int:
        return self.cfg.d_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


@dataclass
class TopKSkipTranscoderConfig(TopKTranscoderConfig):
    @classmethod
    def architecture(cls) -> str:
        return "topk_skip_transcoder"


class TopKSkipTranscoder(TopKTranscoder):
    cfg: TopKSkipTranscoderConfig

    def __init__(self, cfg: TopKSkipTranscoderConfig, use_error_term: bool = False):
        super().__init__(cfg, use_error_term)
        self.W_skip = nn.Parameter(torch.zeros(cfg.d_out, cfg.d_in, dtype=self.dtype, device=self.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x)) + x.to(self.W_skip.dtype) @ self.W_skip.T


register_sae_class("topk_transcoder", TopKTranscoder, TopKTranscoderConfig)
register_sae_class("topk_skip_transcoder", TopKSkipTranscoder, TopKSkipTranscoderConfig)
