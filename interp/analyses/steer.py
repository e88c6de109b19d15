"""Steering: greedy text from a prompt without and with `scale × W_dec[feature]` added at the SAE's hook
(steer.md, steer.json). A model that does not generate text (the arithmetic MLP) is an error."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from interp.analyses.common.inputs import prompt_tokens
from interp.errors import ConfigError
from interp.features.indices import check_feature_index
from interp.features.interventions import steer_generate, steered_logits
from interp.files import atomic_write_text


def require_feature(feature, sae, analysis: str) -> int:
    if feature is None:
        raise ConfigError(f"{analysis} needs a feature. Fix: add feature=<index below {sae.cfg.d_sae}>.")
    return check_feature_index(sae, feature)


def require_text(datamodule, analysis: str) -> None:
    if getattr(datamodule, "tokenizer", None) is None:
        raise ConfigError(f"{analysis} needs a language model that reads and writes text; this run's data has no "
                          "tokenizer (e.g. the arithmetic MLP). Fix: use an SAE run on a language model.")


@torch.no_grad()
def run(model, datamodule, out_dir, *, sae, feature: int | None = None, scale: float = 8.0,
        prompt: str | None = None, max_new_tokens: int = 24) -> dict[str, float]:
    require_text(datamodule, "steer")
    feature = require_feature(feature, sae, "steer")
    tokens = prompt_tokens(model, datamodule, prompt)
    tok = datamodule.tokenizer
    clean, steered = steer_generate(model, sae, feature, scale, tokens[0].tolist(), max_new_tokens, tok.eot_id)
    last_clean = model(tokens)[0, -1].float().log_softmax(-1)
    last_steered = steered_logits(model, sae, feature, scale, tokens)[0, -1].float().log_softmax(-1)
    texts = {"prompt": tok.decode(tokens[0].tolist()), "without": tok.decode(clean), "with": tok.decode(steered)}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "steer.json", json.dumps({"feature": feature, "scale": scale, **texts}) + "\n")
    atomic_write_text(out_dir / "steer.md", f"feature {feature}, scale {scale}\n\nprompt:\n{texts['prompt']}\n\n"
                      f"without steering:\n{texts['without']}\n\nwith steering:\n{texts['with']}\n")
    print(f"steer feature {feature} x {scale}\n  without: {texts['without']!r}\n  with:    {texts['with']!r}")
    same = sum(a == b for a, b in zip(clean, steered))
    return {"feature": float(feature), "scale": float(scale),
            "next_token_kl": (last_clean.exp() * (last_clean - last_steered)).sum().item(),
            "tokens_changed": float(max(len(clean), len(steered)) - same)}
