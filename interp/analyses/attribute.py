"""Attribution of a prediction to SAE features: activation × gradient of the answer's logit after the
prompt, with the SAE spliced in (error term kept). The top features are checked against ablation: the
drop of the logit when each is zeroed, which a first-order attribution predicts (attribute.json/.md)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from interp.analyses.common.inputs import encode_prompt
from interp.analyses.logit_attribution import answer_id
from interp.analyses.steer import require_text
from interp.errors import ConfigError
from interp.features.interventions import ablation_effect, attribute
from interp.files import atomic_write_text
from interp.models import context_length


def run(model, datamodule, out_dir, *, sae, prompt: str | None = None, answer: str | None = None,
        n_top: int = 10, answer_space: bool = True) -> dict[str, float]:
    require_text(datamodule, "attribute")
    if prompt is None or answer is None:
        raise ConfigError("attribute explains the logit of answer after prompt. Fix: pass prompt=\"...\" answer=\" x\".")
    tok = datamodule.tokenizer
    tokens = encode_prompt(prompt, tok, context_length(model))
    target = answer_id(tok, answer, prompt, answer_space)
    out = attribute(model, sae, tokens, target)
    per_feature = out["attr"].sum(0)
    top = per_feature.abs().topk(min(n_top, len(per_feature))).indices.tolist()
    rows = []
    for f in top:
        with torch.no_grad():
            effect = ablation_effect(model, sae, [f], tokens, torch.full_like(tokens, target))
        drop = (effect["clean_logits"][0, -1, target] - effect["ablated_logits"][0, -1, target]).item()
        rows.append({"feature": f, "attribution": per_feature[f].item(), "ablation_drop": drop})
    residual = (out["grad_dot_x"] - out["attr"].sum(-1) - out["rest"]).abs().max().item()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "attribute.json", json.dumps({"prompt": prompt, "answer": answer, "token": target,
                                                              "logit": out["metric"], "features": rows}) + "\n")
    lines = [f"logit of {answer!r} after the prompt: {out['metric']:.4f}", "",
             "| feature | attribution (act × grad) | logit drop when ablated |", "|---|---|---|"]
    lines += [f"| {r['feature']} | {r['attribution']:+.4f} | {r['ablation_drop']:+.4f} |" for r in rows]
    atomic_write_text(out_dir / "attribute.md", "\n".join(lines) + "\n")
    results = {"answer_logit": out["metric"], "attribution_total": per_feature.sum().item(),
               "decomposition_residual": residual}
    for r in rows:
        results |= {f"f{r['feature']}/attribution": r["attribution"], f"f{r['feature']}/ablation_drop": r["ablation_drop"]}
    return results
