"""model=pretrained: any family TransformerLens converts, offline from a local Hugging Face folder. Tiny
random models of each tested family (tests/tiny_hf_models.py) load through the project with log-probs equal
to Hugging Face's own, with their own tokenizer; bad folders and names are one clear error each."""

import json
import shutil

import pytest
import torch
from tiny_hf_models import FAMILIES, build

from interp.errors import ConfigError, DataError
from interp.models import build_model

TEXT = "Sparse autoencoders find features in the residual stream."


def hf_log_probs(folder, ids):
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=torch.float32).eval()
    with torch.no_grad():
        return torch.log_softmax(hf(ids).logits.double(), -1)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    # names with the family in them: TransformerLens would pick its hard-coded configs by such names
    root = tmp_path_factory.mktemp("zoo")
    return {family: build(family, root / f"tiny-{family}") for family in FAMILIES}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("processed", [True, False])
def test_each_family_loads_offline_with_hugging_faces_log_probs(folders, family, processed):
    switches = ("fold_ln", "center_writing_weights", "center_unembed", "fold_value_biases")
    model = build_model({"arch": "pretrained", "name": f"tiny-{family}", "local_dir": str(folders[family]),
                         **{s: processed for s in switches}})
    ids = model.tokenizer(TEXT, return_tensors="pt")["input_ids"]
    assert model.tokenizer.decode(ids[0], skip_special_tokens=True) == TEXT        # the folder's tokenizer
    with torch.no_grad():
        ours = torch.log_softmax(model(ids).double(), -1)
    theirs = hf_log_probs(folders[family], ids)
    assert ours.shape == theirs.shape and (ours - theirs).abs().max() < 1e-4, (ours - theirs).abs().max()
    assert (theirs.exp().max(-1).values < 0.99).all()     # not a degenerate, near one-hot model
    p = model.provenance
    assert p["source"] == "local" and p["architecture"] == model.cfg.original_architecture
    assert p["weights_sha256"]["model.safetensors"] and p["processing"]["fold_ln"] is processed


@pytest.mark.parametrize("family", FAMILIES)
def test_fused_attention_where_it_applies_and_transformer_lens_where_it_does_not(folders, family, monkeypatch):
    """Rotary and grouped-query heads take PyTorch's fused attention (same log-probs as TransformerLens's
    own forward); Gemma 2's soft-capped, sliding-window heads and any layer whose pattern is hooked do not."""
    import torch.nn.functional as F

    from interp.models.fused_ops import unfused

    model = build_model({"arch": "pretrained", "name": f"tiny-{family}", "local_dir": str(folders[family])})
    plain = unfused(model)
    calls, sdpa = [], F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or sdpa(*a, **k))
    ids = model.tokenizer(TEXT, return_tensors="pt")["input_ids"]
    fused_layers = 0 if family == "gemma2" else model.cfg.n_layers
    with torch.no_grad():
        assert (model(ids) - plain(ids)).abs().max() < 1e-5
        assert len(calls) == fused_layers
        hooked = model.run_with_cache(ids, names_filter=["blocks.0.attn.hook_pattern", "blocks.1.attn.hook_z"])[1]
        want = plain.run_with_cache(ids, names_filter=["blocks.0.attn.hook_pattern", "blocks.1.attn.hook_z"])[1]
    assert len(calls) == 2 * fused_layers - (fused_layers > 0)
    for name in want.keys():
        assert (hooked[name] - want[name]).abs().max() < 1e-5, name


def test_context_crop_dtype_and_what_the_model_says_about_bos(folders):
    llama = build_model({"arch": "pretrained", "name": "l", "local_dir": str(folders["llama"]), "n_ctx": 16,
                         "dtype": "bfloat16"})
    assert llama.cfg.n_ctx == 16 and llama.W_E.dtype == torch.bfloat16 and llama.cfg.default_prepend_bos
    gpt2 = build_model({"arch": "pretrained", "name": "g", "local_dir": str(folders["gpt2"]), "n_ctx": 16})
    assert gpt2.W_pos.shape[0] == 16
    neox = build_model({"arch": "pretrained", "name": "n", "local_dir": str(folders["gpt_neox"])})
    assert neox.cfg.default_prepend_bos is False           # Pythia: no BOS, as TransformerLens sets it


def test_bad_local_folders_and_names_are_one_clear_error_each(folders, tmp_path):
    def load(**fields):
        return build_model({"arch": "pretrained", "name": "x", **fields})

    with pytest.raises(ConfigError, match=r"not a model TransformerLens knows; closest: \[.*pythia-70m"):
        load(name="pythia-70mm", local_dir=None)
    other = tmp_path / "bert"
    shutil.copytree(folders["gpt2"], other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "architectures": ["BertForMaskedLM"]}))
    with pytest.raises(DataError, match="'BertForMaskedLM' model, which TransformerLens cannot convert.*"
                                        "Supported: .*Gemma2ForCausalLM"):
        load(local_dir=str(other))
    with pytest.raises(DataError, match="config.json is missing"):
        load(local_dir=str(tmp_path))
    with pytest.raises(DataError, match="is not a directory"):
        load(local_dir=str(tmp_path / "absent"))
    mismatched = tmp_path / "mismatched"
    shutil.copytree(folders["llama"], mismatched)
    bigger = build("llama", tmp_path / "bigger", vocab=128)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(bigger / f, mismatched / f)
    with pytest.raises(DataError, match="has 128 tokens but the model's embedding has 96"):
        load(local_dir=str(mismatched))
    with pytest.raises(ConfigError, match="model.n_ctx=65 is longer than x's context 64"):
        load(local_dir=str(folders["qwen2"]), n_ctx=65)
    with pytest.raises(ConfigError, match="model.dtype='int8'"):
        load(local_dir=str(folders["qwen2"]), dtype="int8")
    with pytest.raises(ConfigError, match="model.d_vocab=50 but x has a vocabulary of 96"):
        load(local_dir=str(folders["qwen2"]), d_vocab=50)


CODE = {"name": "code", "kind": "lm", "vocab_size": 8192, "seq_len": 24, "batch_size": 4, "val_every": 10,
        "max_files": 12, "max_val_chunks": 8, "cache_dir": None}


@pytest.mark.parametrize("family,bos", [("llama", True), ("gpt_neox", False)])
def test_datasets_are_tokenized_with_the_models_own_tokenizer_and_its_bos(folders, family, bos):
    from interp.data import build_datamodule
    from interp.tasks.kind import pretrained_base

    run = pretrained_base({"arch": "pretrained", "name": family, "local_dir": str(folders[family])}, CODE, seed=0)
    data = run.config["data"]
    assert data["vocab_size"] == 96 and data["tokenizer"]["prepend_bos"] is bos
    assert run.tokenizer.encode(TEXT) == run.model.tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    dm = build_datamodule(data, seed=0)
    dm.setup("fit")
    seq = dm.train_ds.arrays["seq"]
    assert seq.max() < 96 and seq.shape[1] == 25
    starts = set(seq[:, 0].tolist())
    assert (starts == {run.tokenizer.bos_id}) is bos              # every window opens with BOS, or none is forced
    pieces = run.tokenizer.characters(seq[0, 1:])
    assert "".join(text for text, _ in pieces) == run.tokenizer.decode(seq[0, 1:])
    assert [p for _, where in pieces for p in where] == list(range(24))


def test_the_cache_key_and_qa_prompts_follow_the_tokenizer(folders):
    from interp.data.hf_tokenizer import HFTokenizer
    from interp.data.tokenizer import Tokenizer, tokenizer_key

    llama = HFTokenizer("l", str(folders["llama"]), prepend_bos=True)
    neox = HFTokenizer("n", str(folders["gpt_neox"]))
    assert tokenizer_key(Tokenizer(300)) == {}                         # the GPT-2 BPE's caches keep their keys
    assert tokenizer_key(llama) != tokenizer_key(neox) and tokenizer_key(llama)["tokenizer"]["files"]
    assert llama.prefix == [llama.bos_id] != [llama.eot_id] and neox.prefix == [] and not neox.prepend_bos
    # prompts and probe texts get the model's BOS in front where TransformerLens would prepend it, else nothing
    from interp.analyses.common.inputs import encode_prompt
    from interp.features.extract import encode_texts

    assert encode_prompt(TEXT, llama, 64)[0].tolist() == [llama.bos_id] + llama.encode(TEXT)
    assert encode_prompt(TEXT, neox, 64)[0].tolist() == neox.encode(TEXT)
    for tok, skip in ((llama, 1), (neox, 0)):
        tokens, mask = encode_texts(tok, ["the quick", TEXT], 64, 64)
        n = len(tok.encode("the quick"))
        assert mask[0].tolist() == [False] * skip + [True] * n + [False] * (tokens.shape[1] - n - skip)


def test_an_sae_from_another_models_release_is_refused(folders):
    from sae_lens import StandardSAE, StandardSAEConfig

    from interp.sae.pretrained import check_against_model

    model = build_model({"arch": "pretrained", "name": "pythia-70m-deduped", "local_dir": str(folders["gpt_neox"])})
    sae = StandardSAE(StandardSAEConfig(d_in=model.cfg.d_model, d_sae=8))
    sae.cfg.metadata.model_name = "gpt2-small"
    with pytest.raises(ConfigError, match=r"trained on gpt2-small \(gpt2\) but the model is pythia-70m-deduped "
                                          r"\(EleutherAI/pythia-70m-deduped\)"):
        check_against_model(sae, model, "blocks.0.hook_resid_post")
    sae.cfg.metadata.model_name = "pythia-70m-deduped"
    check_against_model(sae, model, "blocks.0.hook_resid_post")      # the same model: accepted


@pytest.mark.slow
def test_an_sae_trains_on_a_local_llama_and_analyses_read_it(folders, run_train, train_env, tmp_path):
    import subprocess
    import sys

    from conftest import REPO, SAE_FAST_COMMON

    from interp.runs import load_run

    model = ["model=pretrained", "model.name=tiny-llama", f"model.local_dir={folders['llama']}"]
    data = ["data=code", "data.seq_len=24", "data.max_files=24", "data.batch_size=4"]
    run_train(*SAE_FAST_COMMON, *model, *data, "sae=topk", "sae.k=4", "sae.hook=blocks.1.hook_resid_post",
              run_dir=tmp_path / "sae")
    metrics = json.loads((tmp_path / "sae" / "metrics.json").read_text())
    assert metrics["status"] == "done" and metrics["val/l0"] <= 4 and 0 < metrics["val/ce_loss_score"] <= 1.5
    run = load_run(tmp_path / "sae")
    assert run.config["base"]["pretrained"]["architecture"] == "LlamaForCausalLM"
    assert run.tokenizer.prepend_bos and run.model.cfg.d_vocab == 96
    # its SAE spliced back into the model as a pretrained SAE (SAELens's folder), through dashboard and steering
    proc = subprocess.run([sys.executable, str(REPO / "analyze.py"), *model, *data, "sae=pretrained",
                           f"sae.path={tmp_path / 'sae' / 'sae'}", "analysis=[topk_next,dashboard,steer]",
                           "features=[0,1]", "max_tokens=500", "feature=1", "scale=8", "max_new_tokens=3",
                           "prompt=The quick brown fox", f"out_dir={tmp_path / 'a'}"], cwd=REPO, env=train_env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "a/figures/topk_next/results.json").read_text())["top1_prob_mean"] > 0
    pages = json.loads((tmp_path / "a/figures/dashboard/dashboard.json").read_text())
    assert [p["feature"] for p in pages] == [0, 1] and "without:" in proc.stdout
    # and the explorer's feature page, its contexts in the model's own tokens
    from starlette.testclient import TestClient

    from interp.explorer.app import create_app

    client = TestClient(create_app([tmp_path]))
    rows = client.get("/api/features", params={"path": str(tmp_path / "sae")}).json()["rows"]
    top = max(rows, key=lambda row: row["max"])
    page = client.get("/api/feature", params={"path": str(tmp_path / "sae"), "feature": top["feature"]}).json()
    ctx = page["page"]["top"][0]
    assert ctx["ids"] and max(ctx["ids"]) < 96 and ctx["acts"][ctx["at"]] > 0   # the model's own token ids
    r = client.get("/feature", params={"path": str(tmp_path / "sae"), "feature": top["feature"]})
    assert r.status_code == 200 and 'class="ctx"' in r.text


# By name, as online, from a Hugging Face cache holding the tiny folders under real repo names; the hub is a
# closed local port, so nothing is downloaded. A fresh interpreter: the hub settings are read at import.
BY_NAME = """
import json, sys, time, torch
from interp.errors import DataError
from interp.models import build_model
from interp.tasks.kind import pretrained_base
out = {}
for name, folder in (("pythia-70m-deduped", sys.argv[1]), ("Qwen/Qwen2.5-0.5B", sys.argv[2])):
    hub = build_model({"arch": "pretrained", "name": name})
    local = build_model({"arch": "pretrained", "name": name, "local_dir": folder})
    ids = torch.arange(30).reshape(2, 15) * 3
    with torch.no_grad():
        diff = (torch.log_softmax(hub(ids), -1) - torch.log_softmax(local(ids), -1)).abs().max().item()
    data = {"name": "code", "vocab_size": 8192, "seq_len": 16, "max_files": 4, "cache_dir": None}
    tok = pretrained_base({"arch": "pretrained", "name": name}, data, 0).tokenizer
    out[name] = {"diff": diff, "provenance": hub.provenance, "tokens": tok.encode("The quick brown fox"),
                 "local_tokens": local.tokenizer("The quick brown fox", add_special_tokens=False)["input_ids"]}
# SAELens's release for Pythia, from the same cache: it splices into Pythia and is refused by Qwen
from interp.errors import ConfigError
from interp.sae.pretrained import load_pretrained_sae
pythia = build_model({"arch": "pretrained", "name": "pythia-70m-deduped"})
sae, prov = load_pretrained_sae("pythia-70m-deduped-res-sm", "blocks.0.hook_resid_post", model=pythia)
out["release"] = {"d_in": sae.cfg.d_in, "repo": prov["repo_id"], "model_name": prov.get("model_name")}
try:
    load_pretrained_sae("pythia-70m-deduped-res-sm", "blocks.0.hook_resid_post",
                        model=build_model({"arch": "pretrained", "name": "Qwen/Qwen2.5-0.5B"}))
except ConfigError as e:
    out["release"]["other_model"] = str(e)
start = time.perf_counter()
try:
    build_model({"arch": "pretrained", "name": "pythia-160m"})
except DataError as e:
    out["uncached"] = {"seconds": time.perf_counter() - start, "message": str(e)}
print(json.dumps(out))
"""


def test_by_name_from_the_hugging_face_cache_and_a_clear_error_when_not_there(folders, tmp_path):
    import os
    import subprocess
    import sys

    from conftest import REPO
    from tiny_gpt2 import hub_snapshot

    commit = "89abcdef0123456789abcdef0123456789abcdef"
    for repo, family in (("EleutherAI/pythia-70m-deduped", "gpt_neox"), ("Qwen/Qwen2.5-0.5B", "qwen2")):
        shutil.copytree(folders[family], hub_snapshot(tmp_path / "hub", repo, commit), dirs_exist_ok=True)
    # a release of SAELens's directory (pythia-70m-deduped-res-sm) as its repo holds it: SAELens folders
    from sae_lens import StandardSAE, StandardSAEConfig

    sae = StandardSAE(StandardSAEConfig(d_in=64, d_sae=128))
    sae.cfg.metadata.model_name, sae.cfg.metadata.hook_name = "pythia-70m-deduped", "blocks.0.hook_resid_post"
    sae.save_model(hub_snapshot(tmp_path / "hub", "ctigges/pythia-70m-deduped__res-sm_processed", commit) / "0-res-sm")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_HUB_CACHE=str(tmp_path / "hub"), HF_ENDPOINT="http://127.0.0.1:9", PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", BY_NAME, str(folders["gpt_neox"]), str(folders["qwen2"])],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, repo in (("pythia-70m-deduped", "EleutherAI/pythia-70m-deduped"), ("Qwen/Qwen2.5-0.5B",) * 2):
        got = out[name]
        assert got["diff"] < 1e-5                                # TransformerLens's route = ours from the folder
        assert got["provenance"]["source"] == "hub" and got["provenance"]["name"] == repo
        assert got["provenance"]["revision"] == commit and got["provenance"]["weights_sha256"]
        assert got["tokens"] == got["local_tokens"] and len(got["tokens"]) > 3   # the cached tokenizer
    release = out["release"]
    assert release["d_in"] == 64 and release["repo"] == "ctigges/pythia-70m-deduped__res-sm_processed"
    assert "trained on pythia-70m-deduped (EleutherAI/pythia-70m-deduped) but the model is Qwen/Qwen2.5-0.5B" \
        in release["other_model"], release
    assert out["uncached"]["seconds"] < 10 and "EleutherAI/pythia-160m" in out["uncached"]["message"]
    assert "not in the local cache" in out["uncached"]["message"]


def test_a_bad_pretrained_model_stops_train_py_with_one_line_and_exit_2(run_train, tmp_path):
    from test_bad_input import assert_refused

    # (every other refusal above goes through the same ConfigError / DataError path to this one line)
    proc = run_train("task=sae", "model=pretrained", "model.name=gemma-2-2bb", "data=code", "sae=topk",
                     run_dir=tmp_path / "r", expect_ok=False)
    message = assert_refused(proc, "closest", "gemma-2-2b", "Fix")
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())   # the run records how it ended
    assert metrics["status"] == "failed" and metrics["error"] == message.removeprefix("error: ")
    assert not (tmp_path / "r" / "sae").exists() and not (tmp_path / "r" / "checkpoints").exists()
