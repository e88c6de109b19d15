"""The SAE LightningModule: SAELens training SAEs on a frozen base model's activations.

Training batches are activation rows (from the cache or the stream buffer): one hook's [B, d_in], a
transcoder's input beside its target, or, for a run of several dictionaries (interp.sae.dictionaries),
every hook they need side by side. Each dictionary (interp.sae.dictionary) steps on its own columns
with SAELens's own `training_forward_pass`, coefficient warm-up and dead-feature mask, so every
architecture trains exactly as under SAELens's `SAETrainer`; Lightning adds the loop, devices,
checkpoints and loggers. One Adam holds every dictionary's parameters: its update is per parameter, so
it is the same as one optimiser per dictionary, and gradients are clipped per dictionary. A dictionary
whose loss becomes NaN/inf stops training alone (recorded); the run fails only when all have.
Validation runs the base model on its own validation data, so downstream metrics (CE or task MSE with
the dictionary spliced in) come for free from the same batches.

Metric keys: `val/mse` etc. for a one-dictionary run; `val/mse/<label>` per dictionary otherwise.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from interp import phases
from interp.data.batch import is_lm_batch, model_inputs, padding_mask, scored
from interp.errors import ConfigError, TrainingDiverged
from interp.files import atomic_dir
from interp.models.hooks import to_device
from interp.sae import harvest, normalize
from interp.sae.dictionaries import FOLDER
from interp.sae.dictionary import Dictionary
from interp.sae.figures import save_density_histogram
from interp.sae.metrics import CleanLogProbs, EvalAccumulator, log10_density
from interp.sae.sites import Sites, as_sites, reconstruct
from interp.sae.spec import parse_spec
from interp.subject import Subject
from interp.tasks.base import ConfiguredTask
from interp.tasks.optim import build_optimizers

SAE_DIR = "sae"   # <run>/sae/: the trained SAE in SAELens format (a run of several: <run>/saes/<label>/)
SYNTHETIC_DIR = "synthetic_model"   # data=synthetic: the synthetic model (SyntheticModel.load_from_disk reads it)


class SAETask(ConfiguredTask):
    diverged_fix = "lower optim.lr, or check the base activations for inf/NaN (python analyze.py run=<base run> hooks)."

    def __init__(self, config: dict, d_in: int, base_model=None, dictionaries: list[tuple] | None = None):
        """`dictionaries`: (spec, SAELens kwargs, d_in, columns, label) of each, for a run of several (even of
        one, e.g. `sae.hook=[h]`: saved and logged by label); default: the one `config["sae"]` names, reading all
        of a row's columns (width `d_in`), saved in <run>/sae/."""
        super().__init__(config)
        self.single = dictionaries is None   # saved in <run>/sae/, metrics without a label
        if dictionaries is None:
            spec, saelens = parse_spec(config["sae"])
            dictionaries = [(spec, saelens, d_in, slice(None))]
        self.dictionaries = nn.ModuleList(Dictionary(*d, seed=config.get("seed")) for d in dictionaries)
        # Frozen and not a submodule: not in parameters() (the optimiser), nor in checkpoints.
        object.__setattr__(self, "base_model", base_model)
        self.eval_density: dict[str, torch.Tensor] = {}
        self.restored = False   # from a checkpoint: its weights are not initialised from the data again

    # --- a run of one dictionary keeps its unlabelled names -----------------------------------
    @property
    def sae(self):
        """The run's one SAE (training form); a run of several has no single one."""
        if not self.single:
            raise AttributeError("this SAE run trains several dictionaries: use task.dictionaries")
        return self.dictionaries[0].sae

    def key(self, name: str, d: Dictionary) -> str:
        return name if self.single else f"{name}/{d.label}"

    def live(self) -> list[Dictionary]:
        return [d for d in self.dictionaries if d.failed is None]

    # --- set-up and checkpoints ---------------------------------------------------------------
    def configure_optimizers(self):
        """One Adam, a parameter group per dictionary with its own learning rate (sae.init's rule for its width
        and the run's length); with optim.schedule null, the recipe's schedule (linear: down to zero)."""
        optim, steps = dict(self.config["optim"]), self.trainer.estimated_stepping_batches
        groups = [{"params": list(d.sae.parameters()), "lr": d.learning_rate(optim.get("lr"), steps)}
                  for d in self.dictionaries]
        if optim.get("schedule") is None:
            schedules = {d.spec.lr_schedule for d in self.dictionaries}
            if len(schedules) > 1:
                raise ConfigError(f"these dictionaries' sae.init recipes have different schedules {sorted(schedules)}."
                                  " Fix: set optim.schedule (constant, linear or cosine).")
            optim["schedule"] = schedules.pop()
            if optim["schedule"] == "linear":
                optim["min_lr_ratio"] = 0.0
        return build_optimizers(groups, optim, steps)

    def on_fit_start(self) -> None:
        self._place_base()
        with phases.timed("init_statistics"):
            self._estimate_statistics()

    def _estimate_statistics(self) -> None:
        """Before the first step, from one pass over sae.norm_estimate_batches training batches: the normalisation
        statistics and the decoder bias at the data mean (sae.b_dec_init). A resumed run keeps its own."""
        for d in self.dictionaries:
            kind = d.sae.cfg.normalize_activations
            scale = kind in normalize.ESTIMATED and not normalize.estimated(d.scaler)
            centre = not self.restored and d.spec.b_dec_init == "mean"
            if not (scale or centre):
                continue
            n, total = d.spec.norm_estimate_batches, {"sum": 0.0, "rows": 0}

            def counted(batch):
                total["sum"], total["rows"] = total["sum"] + batch.double().sum(0), total["rows"] + len(batch)
                return batch

            batches = (counted(b[:, d.columns]) for b, _ in zip(self.trainer.datamodule.norm_batches(), range(n)))
            if scale:
                d.scaler = normalize.estimate(kind, d.sae.cfg.d_in, batches, n)
            if centre:
                for _ in batches:   # what the estimate left unread
                    pass
                d.init_b_dec((total["sum"] / max(total["rows"], 1)).to(self.device))

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["activation_scalers"] = [normalize.state(d.scaler) for d in self.dictionaries]
        checkpoint["failed_dictionaries"] = {d.label: d.failed for d in self.dictionaries if d.failed}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.restored = True   # (before on_fit_start, which Lightning calls before it restores global_step)
        states = checkpoint.get("activation_scalers") or [checkpoint.get("activation_scaler", {})]
        for d, saved in zip(self.dictionaries, states):
            d.scaler = normalize.from_state(saved)
        for d in self.dictionaries:
            if why := checkpoint.get("failed_dictionaries", {}).get(d.label):
                d.fail(why)
        state = checkpoint.get("state_dict", {})
        if any(k.startswith(("sae.", "tracker.")) for k in state):   # a checkpoint from before several dictionaries
            checkpoint["state_dict"] = {(f"dictionaries.0.{k}" if k.startswith(("sae.", "tracker.")) else k): v
                                        for k, v in state.items()}

    def on_validation_start(self) -> None:
        self._place_base()

    def _place_base(self) -> None:
        if self.base_model is not None:
            to_device(self.base_model.requires_grad_(False).eval(), self.device)

    # --- training ---------------------------------------------------------------------------
    def training_step(self, batch: torch.Tensor, batch_idx: int):
        losses, logging = [], self.global_step % self.trainer.log_every_n_steps == 0
        for d in self.live():
            out = d.step(batch, self.global_step)
            if not torch.isfinite(out.loss):
                self._fail(d, out.loss)
                continue
            losses.append(out.loss)
            if logging:   # the metrics cost passes over the batch
                self.log_dict({self.key(k, d): v for k, v in d.train_metrics(out, self.global_step).items()})
            window = d.spec.feature_sampling_window
            if (self.global_step + 1) % window == 0:
                self.log(self.key("sparsity/mean_log10_feature_density", d), log10_density(d.tracker.density()).mean())
                d.tracker.reset_window()
        return torch.stack(losses).sum()

    def _fail(self, d: Dictionary, loss: torch.Tensor) -> None:
        why = f"SAE loss became {loss.item()} at step {self.global_step}"
        if self.single:
            self.check_finite(loss, "SAE loss")
        d.fail(why)
        print(f"dictionary {d.label} stopped: {why}; the other {len(self.live())} go on", flush=True)
        if not self.live():
            raise TrainingDiverged(f"every dictionary's loss became NaN/inf (last: {why}). Nothing after the last good "
                                   f"checkpoint was saved. Fix: {self.diverged_fix}")

    def outcome(self) -> dict:
        """metrics.json's `failed_dictionaries`: {label: why} of those that stopped (their metrics are from before)."""
        failed = {d.label: d.failed for d in self.dictionaries if d.failed}
        return {"failed_dictionaries": failed} if failed else {}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """Clip each dictionary's gradients on its own: a shared norm would couple their updates."""
        if not gradient_clip_val:
            return
        for d in self.live():
            params = [p for p in d.sae.parameters() if p.grad is not None]
            if gradient_clip_algorithm == "value":
                nn.utils.clip_grad_value_(params, gradient_clip_val)
            else:
                nn.utils.clip_grad_norm_(params, gradient_clip_val)

    def on_fit_end(self) -> None:
        if self.trainer.is_global_zero:
            root = Path(self.trainer.default_root_dir)
            with phases.timed("save"):
                self._save_all(root)

    def _save_all(self, root: Path) -> None:
        for d in self.live():
            self.save_dictionary(d, root / SAE_DIR if self.single else root / FOLDER / d.label)
        if synthetic := getattr(self.base_model, "synthetic", None):   # SAELens's own files: its loaders read them
            with atomic_dir(root / SYNTHETIC_DIR) as tmp:
                synthetic.save(tmp)

    def save_dictionary(self, d: Dictionary, path) -> None:
        """SAELens format (cfg.json + sae_weights.safetensors + sparsity.safetensors):
        `sae_lens.SAE.load_from_disk(path)` loads it."""
        from sae_lens.constants import SPARSITY_FILENAME
        from safetensors.torch import save_file

        meta = d.sae.cfg.metadata
        base = self.config.get("base", {})
        meta.model_name = base.get("run") or base.get("pretrained", {}).get("name")
        if "pretrained" in base:   # how SAELens should load the model for this SAE's activations
            meta.model_from_pretrained_kwargs = dict(base["pretrained"].get("processing") or {})
        meta.context_size = self.config["data"].get("seq_len")
        meta.sae_lens_training_version = __import__("sae_lens").__version__
        if int(d.tracker.n_samples) > 0:
            meta.l0 = float(d.tracker.density().sum())
            meta.num_dead_features = int(d.tracker.dead_mask().sum())
        # The saved form: normalisation statistics folded in (it takes raw activations), a transcoder as
        # SAELens's transcoder. Written as a whole folder renamed into place, so `path` is never half an SAE.
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with atomic_dir(path) as tmp:
            d.saved_form().save_model(tmp)
            save_file({"sparsity": log10_density(d.tracker.density()).cpu()}, str(tmp / SPARSITY_FILENAME))

    # --- evaluation -------------------------------------------------------------------------
    def subject(self) -> Subject:
        """Analyses look at the saved SAE(s) on the frozen base model and the base run's data; a run of
        several dictionaries is a comparison of them (`Subject.compared`, e.g. for feature_layers)."""
        dm = self.trainer.datamodule.base_dm
        if self.single:
            sae = self.dictionaries[0].saved_form()
            return Subject(self.base_model, dm, sae, dictionaries=(sae,))
        saved = tuple(d.saved_form() for d in self.live())
        return Subject(self.base_model, dm, None, tuple(Subject(self.base_model, dm, s) for s in saved), saved)

    def on_validation_epoch_start(self) -> None:
        self.evaluated = [(d, EvalAccumulator(d.sae.cfg.d_sae, d.spec.dense_threshold), d.saved_form())
                          for d in self.live()]

    @torch.no_grad()
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        with phases.timed("evaluate"):
            hooks = list(dict.fromkeys(h for d, _, _ in self.evaluated for h in d.sites.hooks))
            # one clean run with every hook read, one zero-ablation per target hook: shared by the dictionaries
            shared = {"clean": self.base_model.run_with_cache(model_inputs(_on(batch, self.base_model)),
                                                              names_filter=hooks)}
            for d, acc, sae in self.evaluated:
                evaluate_batch(sae, self.base_model, d.sites, batch, acc, shared)

    def on_validation_epoch_end(self) -> None:
        mses = []
        for d, acc, sae in self.evaluated:
            results = acc.compute()
            results["dead_features"] = int(d.tracker.dead_mask().sum())
            self.eval_density[d.label] = acc.density()
            if synthetic := getattr(self.base_model, "synthetic", None):   # ground truth: SAELens's benchmark scores
                results |= synthetic_scores(sae, synthetic, self.config["data"], d.spec.batch_size)
            self.log_dict({self.key(f"val/{k}", d): float(v) for k, v in results.items()}, prog_bar=False)
            mses.append(results["mse"])
        # for ModelCheckpoint(monitor=val/loss): the mean over the dictionaries still training
        self.log("val/loss", sum(mses) / max(len(mses), 1), prog_bar=True)
        if not self.trainer.sanity_checking:
            for d, _, _ in self.evaluated:
                self._log_density_histogram(d)

    def _log_density_histogram(self, d: Dictionary) -> None:
        """PNG in <run>/figures/sae/ (rewritten each evaluation) and a W&B histogram."""
        from pytorch_lightning.loggers import WandbLogger

        density = self.eval_density[d.label]
        name = "feature_density.png" if self.single else f"feature_density_{d.label}.png"
        if self.trainer.is_global_zero:
            save_density_histogram(
                density, Path(self.trainer.default_root_dir) / "figures" / "sae" / name,
                f"{d.spec.architecture} {d.sites.kind} at {d.sites.describe()}, step {self.global_step}")
        for logger in self.trainer.loggers:
            if isinstance(logger, WandbLogger):
                import wandb

                hist = wandb.Histogram(log10_density(density).numpy())
                logger.experiment.log({self.key("val/log10_feature_density", d): hist,
                                       "trainer/global_step": self.global_step})

    test_step = validation_step
    on_test_epoch_start = on_validation_epoch_start

    def on_test_epoch_end(self) -> None:
        self.on_validation_epoch_end()


def _on(batch: dict, model) -> dict:
    device = next(model.parameters()).device
    return {k: v.to(device) for k, v in batch.items()}


@torch.no_grad()
def synthetic_scores(sae, synthetic, data: dict, batch_size: int) -> dict[str, float]:
    """SAELens's `eval_sae_on_synthetic_data` of the saved-form dictionary (it reads raw activations) on
    `data.eval_samples` fresh rows of the synthetic model, as `synthetic/<metric>`: mcc, f1, precision,
    recall, accuracy, uniqueness, dead_latents, shrinkage, explained_variance, sae_l0, true_l0. The rows
    come from a fixed seed, so every evaluation of a run scores on the same rows."""
    from sae_lens.synthetic import eval_sae_on_synthetic_data

    if sae.W_dec.device.type != "cpu":   # the synthetic model samples on the CPU
        sae = copy.deepcopy(sae).cpu()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(data.get("model_seed", 0) + 1)
        result = eval_sae_on_synthetic_data(sae, synthetic.feature_dict,
                                            synthetic.activation_generator, num_samples=int(data["eval_samples"]),
                                            batch_size=batch_size)
    c = result.classification
    return {f"synthetic/{k}": float(v) for k, v in {
        "mcc": result.mcc, "f1": c.f1_score, "precision": c.precision, "recall": c.recall, "accuracy": c.accuracy,
        "uniqueness": result.uniqueness, "dead_latents": result.dead_latents, "shrinkage": result.shrinkage,
        "explained_variance": result.explained_variance, "sae_l0": result.sae_l0, "true_l0": result.true_l0}.items()}


@torch.no_grad()
def evaluate_batch(sae, base_model, where: str | Sites, batch: dict, acc: EvalAccumulator,
                   shared: dict | None = None) -> None:
    """Add one base-data batch to `acc`: reconstruction metrics of the target and, with the
    dictionary's output spliced into the base model at the target hook (a transcoder in place of
    its MLP), the downstream loss (CE and KL for LMs, MSE for regression).

    For several dictionaries of one batch, pass the same `shared` dict to each: the base model's clean
    run (with every hook any of them reads, pre-filled by the caller), the clean next-token distribution
    and each target hook's zero-ablation are computed by the first dictionary that needs them and reused."""
    batch = _on(batch, base_model)
    inputs = model_inputs(batch)
    sites = as_sites(where)
    hook = sites.target
    shared = {} if shared is None else shared
    if "clean" not in shared:   # the clean run also gives the dictionary's input and target
        shared["clean"] = base_model.run_with_cache(inputs, names_filter=list(sites.hooks))
    clean, cache = shared["clean"]
    acts = harvest.rows(cache[sites.hook], batch, sites.hook)
    feats = sae.encode(acts)
    recon = reconstruct(sae, acts, feats)
    acc.add(harvest.rows(cache[hook], batch, hook), recon, feats)

    mask = padding_mask(batch)

    def splice(act, hook=None):   # same prefix as the clean run, so the same activations: reuse recon
        if act.ndim == 2 or mask is None:
            return recon.to(act.dtype).view(act.shape)
        out = act.clone()
        out[mask] = recon.to(act.dtype)
        return out

    def zero(act, hook=None):
        return torch.zeros_like(act)

    if "reference" not in shared and is_lm_batch(batch):   # CE (and KL) over positions that have a target
        keep = scored(batch["targets"])
        if mask is not None:
            keep &= mask
        shared["reference"] = CleanLogProbs(clean, batch["targets"], keep)

    if not is_lm_batch(batch) and "y" not in batch:   # generated activations (data=synthetic): no task downstream
        return

    def downstream(output) -> dict:   # per-token values of one run of the base model on this batch
        if is_lm_batch(batch):
            ce, kl = shared["reference"].compare(output)
            return {"ce_loss": ce, "kl_div": kl}
        return {"task_mse": (output.float() - batch["y"].float()).pow(2)}   # regression: the task's MSE

    if "without_sae" not in shared:
        shared["without_sae"] = ({"ce_loss": shared["reference"].ce} if is_lm_batch(batch)
                                 else downstream(clean))
    if ("with_ablation", hook) not in shared:
        shared["with_ablation", hook] = downstream(base_model.run_with_hooks(inputs, fwd_hooks=[(hook, zero)]))
    runs = {"without_sae": shared["without_sae"], "with_ablation": shared["with_ablation", hook],
            "with_sae": downstream(base_model.run_with_hooks(inputs, fwd_hooks=[(hook, splice)]))}
    for run, values in runs.items():
        for metric, per_token in values.items():
            acc.add_downstream(f"{metric}_{run}", per_token)
