"""Next-token language modelling.

Logs train/loss; val/loss, val/ppl and val/acc weighted by target tokens (not
by batches, so padding-heavy batches don't skew them); and, for data that
provides question/answer pairs (qa), the exact-match rate of greedy answers on
training question templates and on held-out ones.
"""

import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric

from interp.data.batch import IGNORE_INDEX, scored
from interp.models import context_length
from interp.tasks.base import BaseTask
from interp.tasks.generate import greedy_complete


class LMTask(BaseTask):
    def __init__(self, config: dict):
        super().__init__(config)
        self.val_loss = MeanMetric()
        self.val_acc = MeanMetric()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model(tokens)

    def _loss(self, batch):
        logits = self(batch["tokens"])
        targets = batch["targets"]
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX)
        return logits, targets, loss

    def training_step(self, batch, batch_idx):
        _, _, loss = self._loss(batch)
        self.check_finite(loss)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        logits, targets, loss = self._loss(batch)
        mask = scored(targets)
        n = mask.sum()
        if n == 0:
            return
        correct = (logits.argmax(-1) == targets) & mask
        self.val_loss.update(loss, weight=n)
        self.val_acc.update(correct.sum() / n, weight=n)

    def on_validation_epoch_end(self):
        loss = self.val_loss.compute()
        self.log("val/loss", loss, prog_bar=True)
        self.log("val/ppl", torch.exp(loss))
        self.log("val/acc", self.val_acc.compute())
        self.val_loss.reset()
        self.val_acc.reset()
        self._log_exact_match()

    def _log_exact_match(self):
        dm = getattr(self.trainer, "datamodule", None)
        if dm is None or not hasattr(dm, "exact_match_sets") or self.trainer.sanity_checking:
            return
        tokenizer = dm.tokenizer
        max_new = int(self.config["task"].get("answer_max_tokens", 16))
        for name, pairs in dm.exact_match_sets().items():
            prompts = [p for p, _ in pairs]
            completions = greedy_complete(self.model, prompts, max_new, tokenizer.eot_id,
                                          max_len=context_length(self.model))
            hits = [tokenizer.decode(c).strip() == answer for c, (_, answer) in zip(completions, pairs)]
            self.log(f"val/answer_exact_match/{name}", sum(hits) / max(1, len(hits)))
