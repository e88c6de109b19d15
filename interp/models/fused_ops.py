"""TransformerLens's GELU, LayerNorm and attention computed by PyTorch's fused kernels: the same maths.

TransformerLens writes GPT-2's `gelu_new` (and `gelu_fast`) and its LayerNorms as chains of elementwise
operations, each a pass over [batch, pos, width]; `F.gelu(x, approximate="tanh")` and `F.layer_norm` compute
the same in one (GELU on [16, 256, 1024]: 52 -> 7 ms here, max difference 2.4e-7). In a py-spy profile of
harvesting a GPT-2 block's activations the two chains held 45% of the samples. Every hook still fires: the MLP's hook_pre and hook_post sit
around its act_fn, and a LayerNorm whose hook_scale or hook_normalized has a hook attached (a transcoder
reading `ln2.hook_normalized`, a patching analysis) runs TransformerLens's own forward.

Attention runs as `F.scaled_dot_product_attention` (causal, TransformerLens's scale) when nothing needs
the [batch, head, query, key] tensors: no hook on `hook_attn_scores` or `hook_pattern`, no padding mask,
cache or positional bias, and a plain global causal head (GPT-2's learned positions or rotary ones as in
Pythia, Llama and Qwen, grouped-query heads included; no soft cap, sinks, sliding window or per-head
results). Everything else, and every layer whose pattern is hooked (attention patterns, attribution
graphs' frozen patterns), runs TransformerLens's forward; hook_q/k/v/z and hook_rot_q/k still fire.
"""

from __future__ import annotations

import copy
import types

import torch
import torch.nn.functional as F
from transformer_lens.components import Attention, GroupedQueryAttention, LayerNorm, LayerNormPre
from transformer_lens.utilities.activation_functions import gelu_fast, gelu_new, gelu_pytorch_tanh

FUSED_ACTIVATIONS = {gelu_new: gelu_pytorch_tanh, gelu_fast: gelu_pytorch_tanh}


def _hooked(hook_point) -> bool:
    return bool(hook_point._forward_hooks or hook_point._forward_pre_hooks or hook_point._backward_hooks)


def _layer_norm(self, x: torch.Tensor) -> torch.Tensor:
    if x.dtype not in (torch.float32, torch.float64) or _hooked(self.hook_scale) or _hooked(self.hook_normalized):
        return type(self).forward(self, x)
    weight, bias = (self.w, self.b) if isinstance(self, LayerNorm) else (None, None)
    return F.layer_norm(x, x.shape[-1:], weight, bias, self.eps)


_ATTENTION = (Attention, GroupedQueryAttention)


def _plain_causal(self) -> bool:
    """A head whose pattern is softmax(q k^T / attn_scale) under a causal mask and nothing else."""
    cfg = self.cfg
    return (type(self) in _ATTENTION and getattr(self, "attn_type", "global") == "global"
            and cfg.positional_embedding_type in ("standard", "rotary") and cfg.attention_dir == "causal"
            and getattr(self, "_attention_dir_override", None) in (None, "causal")
            and not cfg.use_attn_result and not getattr(cfg, "load_in_4bit", False)
            and not getattr(cfg, "use_attention_sinks", False) and getattr(cfg, "clip_qkv", None) is None
            and not (getattr(cfg, "use_logn_attn", False) and not self.training)
            and not (cfg.attn_scores_soft_cap or 0) > 0
            and cfg.original_architecture not in ("OlmoeForCausalLM", "Olmo2ForCausalLM", "Olmo3ForCausalLM"))


def _attention(self, query_input, key_input, value_input, past_kv_cache_entry=None,
               additive_attention_mask=None, attention_mask=None, position_bias=None, **kwargs):
    if (kwargs or past_kv_cache_entry is not None or additive_attention_mask is not None
            or attention_mask is not None or position_bias is not None
            or query_input.dtype not in (torch.float32, torch.float64)
            or _hooked(self.hook_attn_scores) or _hooked(self.hook_pattern) or not _plain_causal(self)):
        return type(self).forward(self, query_input, key_input, value_input, past_kv_cache_entry,
                                  additive_attention_mask, attention_mask, position_bias, **kwargs)
    q, k, v = self.calculate_qkv_matrices(query_input, key_input, value_input)   # [batch, pos, head, d_head]
    if self.cfg.positional_embedding_type == "rotary":   # as TransformerLens's forward, with no cache
        q, k = self.hook_rot_q(self.apply_rotary(q)), self.hook_rot_k(self.apply_rotary(k))
    if isinstance(self, GroupedQueryAttention) and not self.cfg.ungroup_grouped_query_attention:
        k, v = (t.repeat_interleave(self.repeat_kv_heads, dim=2) for t in (k, v))
    z = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                       is_causal=True, scale=1.0 / float(self.attn_scale))
    z = self.hook_z(z.transpose(1, 2))
    w_o = self.W_O.reshape(-1, self.W_O.shape[-1])   # [head * d_head, d_model]
    return F.linear(z.reshape(*z.shape[:2], -1).to(w_o.dtype), w_o.T, self.b_O)


def fuse(model):
    """Give `model`'s GELUs, LayerNorms and attention the fused forms, in place (per module: the classes are
    untouched)."""
    for module in model.modules():
        if getattr(module, "act_fn", None) in FUSED_ACTIVATIONS:
            module.act_fn = FUSED_ACTIVATIONS[module.act_fn]
        if type(module) in (LayerNorm, LayerNormPre):
            module.forward = types.MethodType(_layer_norm, module)
        if type(module) in _ATTENTION:
            module.forward = types.MethodType(_attention, module)
    return model


def unfused(model):
    """A copy of `model` with TransformerLens's own GELU, LayerNorm and attention back (fuse's inverse): the
    reference the fused forms are checked and timed against."""
    plain = copy.deepcopy(model)
    originals = {fused: own for own, fused in FUSED_ACTIVATIONS.items()}
    for module in plain.modules():
        module.__dict__.pop("forward", None)   # fuse() sets forwards per module; the class's comes back
        if getattr(module, "act_fn", None) in originals:
            module.act_fn = originals[module.act_fn]
    return plain
