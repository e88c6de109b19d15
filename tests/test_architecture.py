"""The package's structure, checked: imports only point down the layers, no task is special-cased
outside its own package, the batch format has one home, the SAE spec matches its config group."""

import ast
import dataclasses
import math
import re
from pathlib import Path

import pytest
import yaml
from conftest import REPO

PACKAGE = REPO / "interp"

# Bottom up; a module may import its own layer or any lower one (docs/architecture.md).
LAYERS = [
    ["interp", "interp.errors", "interp.config_schema", "interp.files", "interp.run_dir", "interp.subject", "interp.viz",
     "interp.hugepages", "interp.hub", "interp.provenance", "interp.objectives"],
    ["interp.models", "interp.data"],
    ["interp.tasks", "interp.analyses", "interp.sae", "interp.features", "interp.circuits"],
    ["interp.callbacks", "interp.registry"],
    ["interp.runs"],
    ["interp.training", "interp.analyzing", "interp.targets", "interp.analyze_wandb", "interp.resume", "interp.cli", "interp.sweep", "interp.reproduce",
     "interp.compare", "interp.explorer"],
]
# Within a layer, packages that must not import each other at all.
NEVER = {("interp.runs", "interp.sae"), ("interp.sae", "interp.runs"), ("interp.sae", "interp.analyses"),
         ("interp.sae", "interp.callbacks"), ("interp.tasks", "interp.sae"), ("interp.sae", "interp.features"),
         ("interp.features", "interp.analyses"), ("interp.tasks", "interp.features"),
         ("interp.sae", "interp.circuits"), ("interp.circuits", "interp.analyses")}


def layer_of(module: str) -> int:
    best = max((prefix for layer in LAYERS for prefix in layer if module == prefix or module.startswith(prefix + ".")),
               key=len)
    return next(i for i, layer in enumerate(LAYERS) if best in layer)


def top(module: str) -> str:
    return ".".join(module.split(".")[:2])


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every interp module `path` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("interp")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("interp") and node.level == 0:
            found.add(node.module)
    return found


def import_graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_imports_only_point_down_the_layers():
    upward = [(m, i) for m, deps in import_graph().items() for i in deps if layer_of(i) > layer_of(m)]
    assert not upward, f"imports that point up a layer: {upward}"


def test_no_forbidden_edges_inside_a_layer():
    edges = {(top(m), top(i)) for m, deps in import_graph().items() for i in deps}
    assert not edges & NEVER, edges & NEVER


def test_the_layer_check_catches_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from interp.training import train\n")
    assert any(layer_of(i) > layer_of("interp.models.x") for i in imports(bad))


def test_no_task_is_named_outside_its_package_and_the_registry():
    allowed = {PACKAGE / "registry.py"}
    offenders = [str(p.relative_to(REPO)) for p in PACKAGE.rglob("*.py")
                 if "sae" not in p.relative_to(PACKAGE).parts[:1] and p not in allowed and '"sae"' in p.read_text()]
    offenders += [f for f in ("train.py", "analyze.py") if '"sae"' in (REPO / f).read_text()]
    assert not offenders


def test_the_ignore_index_has_one_home():
    literal = re.compile(r"(?<![\w.])-100\b")
    offenders = [str(p.relative_to(REPO)) for p in [*PACKAGE.rglob("*.py"), *(REPO / "benchmarks").glob("*.py")]
                 if p.name != "batch.py" and literal.search(p.read_text())]
    assert not offenders


def test_sae_spec_fields_are_documented_and_match_the_config_group():
    from interp.sae.spec import OWN_FIELDS, CacheSpec, SAESpec

    tree = ast.parse((PACKAGE / "sae" / "spec.py").read_text())
    for cls in (SAESpec, CacheSpec):
        body = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls.__name__).body
        documented = {a.target.id for a, b in zip(body, body[1:]) if isinstance(a, ast.AnnAssign)
                      and isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant) and isinstance(b.value.value, str)}
        assert documented == {f.name for f in dataclasses.fields(cls)}, cls
    common = yaml.safe_load((REPO / "conf" / "sae" / "common.yaml").read_text())
    defaults = dataclasses.asdict(SAESpec())
    for key, value in common.items():
        if key in OWN_FIELDS and key != "cache":
            assert value == defaults[key], key
    assert {k: v for k, v in common["cache"].items() if k != "root"} == \
        {k: v for k, v in defaults["cache"].items() if k != "root"}
    assert set(OWN_FIELDS) - set(common) == {"architecture", "sparse_decode", "fused"}   # set per architecture


@pytest.mark.parametrize("arch", ["standard", "topk", "batchtopk", "jumprelu", "gated"])
def test_every_saelens_field_of_the_config_group_reaches_saelens(arch):
    from interp.sae.architectures import training_classes
    from interp.sae.spec import parse_spec

    group = REPO / "conf" / "sae"
    spec = {**yaml.safe_load((group / "common.yaml").read_text()), **yaml.safe_load((group / f"{arch}.yaml").read_text())}
    spec.pop("defaults")
    _, saelens = parse_spec({**spec, "cache": {}})
    cfg_fields = {f.name for f in dataclasses.fields(training_classes(arch)[0])}
    assert saelens and set(saelens) <= cfg_fields


def test_every_registered_task_builds_and_loads():
    from interp.registry import TASKS
    from interp.tasks.kind import TaskKind

    for name, kind in TASKS.items():
        assert type(kind).build is not TaskKind.build and type(kind).load is not TaskKind.load, name


# --- the two examples of docs/architecture.md, run as written ------------------------------------------

def doc_example(name: str):
    """The python block of docs/architecture.md whose docstring names `name`, loaded as a module."""
    import types

    blocks = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "architecture.md").read_text(), flags=re.S)
    code = next(b for b in blocks if name in b.split("\n", 1)[0])
    module = types.ModuleType(f"doc_example_{name}")
    exec(compile(code, f"docs/architecture.md:{name}", "exec"), module.__dict__)
    return module


TINY_DATA = {"name": "induction", "vocab_size": 320, "seq_len": 16, "token_low": 256, "token_high": 319,
             "min_repeat": 3, "max_repeat": 6, "num_train": 64, "num_val": 16, "batch_size": 8}


def test_the_documented_analysis_runs_through_the_runner(tmp_path, monkeypatch):
    import json

    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from interp.analyses import ANALYSES
    from interp.analyses.runner import run_analysis
    from interp.data import build_datamodule
    from interp.errors import ConfigError
    from interp.subject import Subject

    monkeypatch.setitem(ANALYSES, "entropy", doc_example("Entropy").run)   # the one registry line
    model = HookedTransformer(HookedTransformerConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, n_ctx=16,
                                                      d_vocab=320, attn_only=True)).eval()
    dm = build_datamodule(TINY_DATA, seed=0)
    dm.setup("validate")
    results = run_analysis("entropy", Subject(model, dm), tmp_path, {"n_batches": 1})
    assert 0 < results["entropy_mean"] <= math.log(320) + 1e-4
    assert json.loads((tmp_path / "results.json").read_text()) == results
    with pytest.raises(ConfigError, match="n_batches"):
        run_analysis("entropy", Subject(model, dm), tmp_path, {"n_batchs": 1})


def test_the_documented_task_builds_trains_and_loads(tmp_path, monkeypatch):
    import pytorch_lightning as pl
    import torch
    from hydra import compose, initialize_config_dir

    from interp.registry import TASKS
    from interp.run_dir import read_checkpoint
    from interp.tasks.kind import ModelTaskKind

    monkeypatch.setitem(TASKS, "lm_smooth", ModelTaskKind(doc_example("label smoothing").SmoothedLMTask))
    task_yaml = re.search(r"```yaml\n(name: lm_smooth.*?)```", (REPO / "docs" / "architecture.md").read_text(), re.S)
    overrides = [f"+task.{k}={v}" if k == "smoothing" else f"task.{k}={v}"
                 for k, v in yaml.safe_load(task_yaml.group(1)).items()]
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", [*overrides, "model=transformer_1l", "data=induction", "run_name=doc",
                                f"paths.root_dir={tmp_path}", f"paths.output_dir={tmp_path}",
                                *[f"data.{k}={v}" for k, v in TINY_DATA.items() if k != "name"]])
    kind = TASKS[cfg.task.name]
    cfg, dm, module = kind.build(cfg, {"overrides": [], "choices": {"model": "transformer_1l"}})
    trainer = pl.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         limit_val_batches=0, enable_model_summary=False)
    trainer.fit(module, datamodule=dm)
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    config, raw = read_checkpoint(tmp_path / "last.ckpt")
    loaded = kind.load(tmp_path, config, raw, tmp_path / "last.ckpt", "cpu")
    for (name, a), b in zip(module.model.state_dict().items(), loaded.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_the_layer_sweep_preset_makes_one_job_per_layer_of_its_base():
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", ["experiment=lm_mix_saes_sweep"], return_hydra_config=True)
        base = compose("train", list(cfg.base_overrides))
    sweep = OverridesParser.create().parse_overrides([f"sae.hook={cfg.hydra.sweeper.params['sae.hook']}"])[0]
    hooks = list(sweep.sweep_string_iterator())
    assert hooks == [f"blocks.{i}.hook_resid_post" for i in range(base.model.n_layers)]
    assert cfg.task.name == "sae" and cfg.base_run == "auto"


def test_the_one_pass_presets_name_every_layer_of_their_base():
    from hydra import compose, initialize_config_dir

    from interp.sae.dictionaries import expand

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        saes = compose("train", ["experiment=lm_mix_saes"])
        transcoders = compose("train", ["experiment=lm_mix_transcoders"])
        base = compose("train", list(saes.base_overrides))
    n = base.model.n_layers
    hooks = [f"blocks.{i}.{h}" for i in range(n) for h in ("ln2.hook_normalized", "hook_mlp_out", "hook_resid_post")]
    assert expand(saes.sae.hook, hooks) == [f"blocks.{i}.hook_resid_post" for i in range(n)]
    assert expand(transcoders.sae.hook, hooks) == [f"blocks.{i}.ln2.hook_normalized" for i in range(n)]
    assert expand(transcoders.sae.target_hook, hooks) == [f"blocks.{i}.hook_mlp_out" for i in range(n)]
    assert transcoders.sae.skip and "feature_layers" in saes.callbacks
