"""Feature ablation: zero a feature inside the spliced SAE, error term kept, so only that feature's
contribution leaves the model. Reports the change of the validation loss and, with prompt= and
answer=, of the answer's logit after the prompt."""

from __future__ import annotations

from itertools import islice

import torch

from interp.analyses.common.inputs import encode_prompt
from interp.analyses.logit_attribution import answer_id
from interp.analyses.steer import require_feature, require_text
from interp.data.batch import model_inputs, scored
from interp.errors import ConfigError
from interp.features.interventions import ablation_effect
from interp.models import context_length


@torch.no_grad()
def run(model, datamodule, out_dir, *, sae, feature: int | None = None, prompt: str | None = None,
        answer: str | None = None, n_batches: int = 4, answer_space: bool = True) -> dict[str, float]:
    require_text(datamodule, "ablate")
    feature = require_feature(feature, sae, "ablate")
    if (prompt is None) != (answer is None):
        raise ConfigError("prompt= and answer= go together (the logit of answer after prompt). Fix: pass both.")
    clean = ablated = count = 0.0
    for batch in islice(datamodule.val_dataloader(), n_batches):
        out = ablation_effect(model, sae, [feature], model_inputs(batch), batch["targets"])
        keep = scored(batch["targets"]).to(out["clean_loss"].device)
        clean += out["clean_loss"][keep].sum().item()
        ablated += out["ablated_loss"][keep].sum().item()
        count += int(keep.sum())
    results = {"loss_clean": clean / count, "loss_ablated": ablated / count, "loss_delta": (ablated - clean) / count}
    if prompt is not None:
        tokens = encode_prompt(prompt, datamodule.tokenizer, context_length(model))
        target = answer_id(datamodule.tokenizer, answer, prompt, answer_space)
        out = ablation_effect(model, sae, [feature], tokens, torch.full_like(tokens, target))
        a, b = out["clean_logits"][0, -1, target].item(), out["ablated_logits"][0, -1, target].item()
        results |= {"answer_logit_clean": a, "answer_logit_ablated": b, "answer_logit_delta": b - a}
    return results
