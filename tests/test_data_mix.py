"""data=mix: labelled real-text categories from installed packages (offline, CPU)."""

import hashlib
import json
import shutil
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from interp.analyses.category_loss import category_losses, labelled_val
from interp.data import build_datamodule, mix_sources
from interp.data.mix import SPLITS, split_of
from interp.errors import DataError
from interp.models import build_model

REPO = Path(__file__).resolve().parents[1]
SMALL = {"max_train_tokens_per_category": 20000, "seq_len": 64, "batch_size": 8, "max_val_chunks": 8}
# Every built-in category and where its documents must come from.
EXPECTED = {"python": ({"python-stdlib"}, {"PSF-2.0"}),
            "web": ({"licensedcode-data"}, {"CC-BY-4.0"}),
            "math": ({"sympy", "mpmath"}, {"BSD-3-Clause"}),
            "non_english": ({"chatterbot-corpus", "licensedcode-data"}, {"BSD (PyPI classifier)", "CC-BY-4.0"}),
            "formal": ({"licensedcode-data"}, {"CC-BY-4.0"}),
            "conversational": ({"chatterbot-corpus"}, {"BSD (PyPI classifier)"})}


def mix_dm(cache_dir, seed=0, **overrides):
    """Like train.py: conf/data/mix.yaml inside a config whose paths.cache_dir is `cache_dir`."""
    root = OmegaConf.create({"paths": {"cache_dir": str(cache_dir)},
                             "data": OmegaConf.load(REPO / "conf/data/mix.yaml")})
    root.data.merge_with({**SMALL, **overrides})
    dm = build_datamodule(root.data, seed=seed)
    dm.setup("fit")
    return dm


def corpus_digest(dm) -> str:
    h = hashlib.sha256()
    for k in sorted(dm.corpus):
        h.update(k.encode() + dm.corpus[k].tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def dm(tmp_path_factory):
    return mix_dm(tmp_path_factory.mktemp("mix_cache"))


@pytest.fixture(scope="module")
def texts():
    """id -> text of every built-in document, read again from the packages."""
    return {d.id: d.text for d in mix_sources.builtin_documents(list(mix_sources.CATEGORIES))}


def test_every_category_non_empty(dm):
    assert dm.categories == list(EXPECTED)
    for row in dm.corpus_table():
        for split in SPLITS:
            assert row[f"{split}_docs"] >= 1 and row[f"{split}_tokens"] > SMALL["seq_len"], (row["category"], split)
        # the cap: the train stream stops at it when the category has more text
        assert row["train_tokens"] <= SMALL["max_train_tokens_per_category"]
    val_ids = dm.val_ds.arrays["category"]
    assert set(np.unique(val_ids)) == set(range(len(dm.categories)))
    assert set(np.unique(dm.train_ds.arrays["category"])) == set(range(len(dm.categories)))


def test_documents_never_cross_splits(dm):
    ids = {s: [d["id"] for d in dm.documents(s)] for s in SPLITS}
    for s in SPLITS:
        assert len(ids[s]) == len(set(ids[s]))
        assert all(split_of(i, 0.1, 0.05) == s for i in ids[s])   # the split is the id's hash alone
    assert not set(ids["train"]) & set(ids["val"])
    assert not set(ids["train"]) & set(ids["heldout"])
    assert not set(ids["val"]) & set(ids["heldout"])


def test_provenance(dm):
    for s in SPLITS:
        for d in dm.documents(s):
            packages, licences = EXPECTED[d["category"]]
            assert d["package"] in packages and d["licence"] in licences and d["version"], d
            assert d["id"] == f"{d['package']}:{d['path']}"
    # the recorded file exists where the package is installed
    for d in dm.documents("val")[::50]:
        file = d["path"].split("::")[0].split("#")[0]
        root = (Path(sysconfig.get_paths()["stdlib"]) if d["package"] == "python-stdlib"
                else Path(str(metadata.distribution(d["package"]).locate_file(""))))
        assert (root / file).is_file(), d


def test_deterministic_across_builds(dm, tmp_path):
    """A fresh process (other PYTHONHASHSEED), another seed, another cache: the same corpus."""
    code = (f"import sys; sys.path.insert(0, {str(REPO / 'tests')!r}); from test_data_mix import mix_dm, "
            f"corpus_digest; print(corpus_digest(mix_dm({str(tmp_path)!r}, seed=1)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.split()[-1] == corpus_digest(dm)


def test_category_ids_line_up_with_documents(dm, texts):
    """Each example's text comes from documents of the category its `category` id names."""
    eot = "<|endoftext|>"
    by_category = {c: [] for c in dm.categories}
    for d in dm.documents("train") + dm.documents("val"):
        by_category[d["category"]].append(texts[d["id"]])
    batch = labelled_val(dm)
    for split, (tokens, category) in {"val": (batch[0], batch[2]),
                                      "train": (torch.from_numpy(dm.train_ds.arrays["seq"].astype(np.int64)),
                                                torch.from_numpy(dm.train_ds.arrays["category"]))}.items():
        for c in range(len(dm.categories)):
            for row in tokens[category == c][:3]:
                # strip("\ufffd"): a chunk can start or end inside a multi-byte character
                pieces = [p.strip("\ufffd") for p in dm.tokenizer.decode(row).split(eot) if len(p) > 20]
                assert pieces, (split, dm.categories[c])
                for p in pieces:   # whole documents or their ends: substrings of one of the category's documents
                    assert any(p in t for t in by_category[dm.categories[c]]), (split, dm.categories[c], p[:80])


def test_heldout_documents(dm, texts):
    held = dm.heldout_documents()
    assert {c for c, _ in held} == set(dm.categories)
    heldout = {d["id"] for d in dm.documents("heldout") if d["complete"]}
    assert sorted(t for _, t in held) == sorted(texts[i] for i in heldout)   # exact texts back from tokens


def test_category_loss_table(dm):
    model = build_model({"arch": "transformer", "n_layers": 1, "d_model": 32, "n_heads": 2, "d_head": 16, "d_mlp": 64,
                         "d_vocab": dm.tokenizer.vocab_size, "n_ctx": dm.seq_len, "act_fn": "gelu",
                         "normalization_type": "LN", "seed": 0})
    tokens, targets, category = labelled_val(dm)
    table = category_losses(model, tokens, targets, category, dm.categories,
                            dm.category_streams("train"), dm.tokenizer.vocab_size)
    assert list(table) == dm.categories + ["all"]
    assert sum(table[c]["tokens"] for c in dm.categories) == table["all"]["tokens"] == targets.numel()
    for row in table.values():   # an untrained model is near log(V); the bigram beats the unigram
        assert abs(row["model_ce"] - np.log(dm.tokenizer.vocab_size)) < 1.0
        assert row["bigram_ce"] < row["unigram_ce"] < row["model_ce"]


# ---------------------------------------------------------------- the user's own categories


def test_user_category(tmp_path):
    """This repo's own YAML configs as a new category: ids relative to the glob, stable wherever it lives."""
    shutil.copytree(REPO / "conf", tmp_path / "conf")
    dm = mix_dm(tmp_path / "cache", categories=["conversational"],
                extra={"yaml_config": str(tmp_path / "conf/**/*.yaml")}, val_fraction=0.3, heldout_fraction=0.2)
    assert dm.categories == ["conversational", "yaml_config"]
    docs = [d for s in SPLITS for d in dm.documents(s) if d["category"] == "yaml_config"]
    assert sorted(d["path"] for d in docs) == sorted(p.relative_to(REPO / "conf").as_posix()
                                                     for p in (REPO / "conf").glob("**/*.yaml"))
    assert {d["package"] for d in docs} == {"user"}
    yaml_id = dm.categories.index("yaml_config")
    assert (dm.val_ds.arrays["category"] == yaml_id).any()


@pytest.mark.parametrize("make, pattern, message", [
    (lambda d: None, "*.nope", r"data\.extra\.social=.*matched no files.*Fix: "),
    (lambda d: (d / "a.txt").write_text(""), "*.txt", r"data\.extra\.social=.*all empty.*Fix: "),
    (lambda d: (d / "a.txt").write_text("  \n"), "*.txt", r"data\.extra\.social.*only whitespace.*Fix: "),
    (lambda d: None, "", r"data\.extra\.social is empty.*Fix: "),
    (lambda d: (d / "a.txt").write_text("one lonely document"), "*.txt",
     r"'social' has no (val|train|heldout) documents.*Fix: add files"),
])
def test_user_category_errors(tmp_path, make, pattern, message):
    make(tmp_path)
    with pytest.raises(DataError, match=message):
        mix_dm(tmp_path / "cache", categories=["conversational"],
               extra={"social": str(tmp_path / pattern) if pattern else ""})


def test_user_category_missing_exits_2(train_env, tmp_path):
    """From the command line: `error: ... Fix: ...`, exit code 2, before any model is built."""
    proc = subprocess.run([sys.executable, "train.py", "data=mix", f"+data.extra.social={tmp_path}/*.txt",
                           "logger=none", f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=REPO, env=train_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"error: data.extra.social='{tmp_path}/*.txt' matched no files" in proc.stderr and "Fix:" in proc.stderr


@pytest.mark.slow
def test_lm_mix_preset_end_to_end(run_train, tmp_path):
    """The preset, a few steps: per-category loss against baselines lands in metrics.json."""
    run_train("experiment=lm_mix", "debug=fast", "logger=none", "data.max_train_tokens_per_category=20000",
              run_dir=tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for c in EXPECTED:
        for k in ("model_ce", "unigram_ce", "bigram_ce", "tokens"):
            assert f"analysis/category_loss/{c}/{k}" in metrics
    assert (tmp_path / "figures/category_loss/category_loss.png").stat().st_size > 10_000


def test_heldout_documents_as_a_probe_set(dm):
    from interp.features.probes import heldout_probes

    probes = heldout_probes(dm, per_category=3, max_chars=200)
    held = [t.strip() for _, t in dm.heldout_documents()]
    assert set(probes.categories) <= set(dm.categories) and len(set(probes.categories)) >= 4
    assert all(probes.categories.count(c) <= 3 for c in dm.categories)
    assert all(0 < len(t) <= 200 and any(h.startswith(t) for h in held) for t in probes.texts)
