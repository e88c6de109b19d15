"""Checks on a composed config that catch incompatible choices before any work."""

from omegaconf import DictConfig

from interp.errors import ConfigError

DATA_FOR_KIND = {"lm": "code, qa, induction, mix, text_files or hf", "regression": "arithmetic"}
MODELS_FOR_KIND = {"lm": "kgram, lstm, transformer_0l/1l/2l, transformer, gpt2 or pretrained", "regression": "arithmetic_mlp"}


def check_compatible(cfg: DictConfig, model_name: str, check_task: bool = True) -> None:
    """Model, data and (unless check_task is False: an SAE's base) task must agree on what they
    consume; raise ConfigError naming the fix."""
    model_kind, data_kind, task_kind = cfg.model.kind, cfg.data.kind, cfg.task.kind
    if data_kind == "synthetic":
        raise ConfigError(f"data=synthetic is activations of SAELens's synthetic model, for an SAE to learn: there is "
                          f"no model to train on it (task={cfg.task.name}). Fix: task=sae data=synthetic (see "
                          "experiment=synth_small).")
    if model_kind != data_kind:
        raise ConfigError(
            f"model {model_name!r} is a {model_kind} model but data={cfg.data.name!r} provides {data_kind} data. "
            f"Fix: use data={DATA_FOR_KIND[model_kind]} with this model, or model={MODELS_FOR_KIND[data_kind]} with this data."
        )
    if check_task and task_kind != model_kind:
        raise ConfigError(f"task={cfg.task.name!r} trains {task_kind} models but model {model_name!r} is a {model_kind} "
                          f"model. Fix: task={'lm' if model_kind == 'lm' else 'regression'}.")
    n_ctx = cfg.model.get("n_ctx")
    seq_len = cfg.data.get("seq_len")
    if n_ctx is not None and seq_len is not None and seq_len > n_ctx:
        raise ConfigError(f"data.seq_len={seq_len} is longer than the model's context model.n_ctx={n_ctx}. "
                          f"Fix: data.seq_len={n_ctx} or model.n_ctx={seq_len}.")
    if model_kind == "lm" and cfg.model.get("d_vocab") is not None and cfg.model.d_vocab < cfg.data.vocab_size:
        raise ConfigError(f"model.d_vocab={cfg.model.d_vocab} is smaller than data.vocab_size={cfg.data.vocab_size}. "
                          "Fix: leave model.d_vocab at its default ${data.vocab_size}.")
