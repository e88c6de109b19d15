"""Harvesting activations from a pretrained model (model=pretrained) against the bare TransformerLens
forward pass up to the same layer, on the same batches: does the framework add anything to the cost that
dominates on a big model?

    python benchmarks/pretrained_harvest.py [--family llama] [--d-model 512] [--layers 8] [--batches 20]

A random-weight model of the family (Hugging Face `transformers`, saved with save_pretrained, so nothing is
downloaded) is loaded through `interp.models.build_model` (model=pretrained, model.local_dir=...). Timed,
alternating batch by batch so drift hits both alike, no grad, one middle layer:

- baseline: `model(tokens, stop_at_layer=L + 1)`, TransformerLens's own forward up to that block;
- interp: `interp.sae.harvest.activations(model, batch, hook)`, what task=sae runs per batch (hooks,
  stop_at_layer, rows out of the padding mask);
- TransformerLens's own forms: the same harvest on a copy of the model without the fused GELU, LayerNorm
  and attention (`interp.models.fused_ops`), i.e. what the kernels buy.

Prints tokens/s of each and the ratios (goal: interp / baseline >= 0.9).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--family", default="llama", choices=["gpt2", "gpt_neox", "llama", "gemma2", "qwen2"])
    p.add_argument("--d-model", type=int, default=512)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=256)
    args = p.parse_args()

    from interp.models import build_model
    from interp.models.fused_ops import unfused
    from interp.sae.harvest import activations

    with tempfile.TemporaryDirectory() as tmp:
        folder = _random_model(args.family, Path(tmp) / "model", args.d_model, args.layers, args.seq)
        model = build_model({"arch": "pretrained", "name": args.family, "local_dir": str(folder)})
    layer = args.layers // 2
    hook = f"blocks.{layer}.hook_resid_post"
    g = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, model.cfg.d_vocab, (args.batch, args.seq), generator=g) for _ in range(args.batches)]
    plain = unfused(model)
    base, ours, own = [], [], []
    with torch.no_grad():
        activations(model, {"tokens": batches[0]}, hook)             # warm-up: allocations, kernels
        activations(plain, {"tokens": batches[0]}, hook)
        model(batches[0], stop_at_layer=layer + 1)
        for tokens in batches:
            start = time.perf_counter()
            model(tokens, stop_at_layer=layer + 1)
            base.append(time.perf_counter() - start)
            start = time.perf_counter()
            rows = activations(model, {"tokens": tokens}, hook)
            ours.append(time.perf_counter() - start)
            start = time.perf_counter()
            activations(plain, {"tokens": tokens}, hook)
            own.append(time.perf_counter() - start)
    assert rows.shape == (args.batch * args.seq, model.cfg.d_model)
    tokens = args.batch * args.seq
    b, o, u = (tokens / statistics.median(t) for t in (base, ours, own))
    print(f"{args.family}: d_model {model.cfg.d_model}, {model.cfg.n_layers} layers, hook {hook}; "
          f"{args.batches} batches of {args.batch} x {args.seq}; {torch.get_num_threads()} threads")
    print(f"| path | tokens/s (median batch) |\n|---|---|\n| TransformerLens forward, stop_at_layer={layer + 1} | "
          f"{b:,.0f} |\n| interp harvest (activations) | {o:,.0f} |\n"
          f"| the same harvest, TransformerLens's own GELU, LayerNorm and attention | {u:,.0f} |")
    print(f"\nratio interp / TransformerLens = {o / b:.3f} (goal >= 0.9); fused / own forms = {o / u:.3f}")


def _random_model(family: str, folder: Path, d_model: int, layers: int, n_ctx: int) -> Path:
    """A random model of the family at this size (tests/tiny_hf_models's config, scaled up)."""
    import tiny_hf_models

    _, hf = getattr(tiny_hf_models, f"_{family}")(96)
    fields = hf.config.to_dict()
    fields.pop("layer_types", None)   # per-layer attention kinds: rebuilt for the new depth
    heads = max(4, d_model // 64)
    for key, value in (("hidden_size", d_model), ("n_embd", d_model), ("num_hidden_layers", layers),
                       ("n_layer", layers), ("num_attention_heads", heads), ("n_head", heads),
                       ("intermediate_size", 4 * d_model), ("max_position_embeddings", n_ctx),
                       ("n_positions", n_ctx), ("n_ctx", n_ctx), ("head_dim", d_model // heads),
                       ("query_pre_attn_scalar", d_model // heads), ("vocab_size", 32_000),
                       ("num_key_value_heads", max(1, heads // 2))):
        if key in fields:
            fields[key] = value
    model = type(hf)(type(hf.config)(**fields))
    model.save_pretrained(folder)
    return folder


if __name__ == "__main__":
    main()
