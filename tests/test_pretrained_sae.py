"""Pretrained SAEs through SAELens, offline: a fake cached release, save_model folders, clear errors."""

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from sae_lens import StandardSAE, StandardSAEConfig
from safetensors.torch import save_file
from tiny_gpt2 import D_MODEL, N_HEADS, hub_snapshot, make_tiny_gpt2

from interp.errors import ConfigError, DataError
from interp.models.gpt2 import load_gpt2
from interp.models.pretrained import PROCESSING_DEFAULTS
from interp.sae.pretrained import PROCESSING_CHANGES, from_config, load_pretrained_sae

REPO = Path(__file__).resolve().parents[1]
JB_REPO = "jbloom/GPT2-Small-SAEs-Reformatted"   # where SAELens's directory puts gpt2-small-res-jb


def tiny_sae(hook: str = "blocks.0.hook_resid_pre", d_in: int = D_MODEL, **cfg) -> StandardSAE:
    torch.manual_seed(0)
    sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=4 * d_in, **cfg))
    with torch.no_grad():
        for p in sae.parameters():
            p.normal_()   # the default b_enc/b_dec are zeros: random weights make equality checks mean something
    sae.cfg.metadata.hook_name = hook
    return sae


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return make_tiny_gpt2(tmp_path_factory.mktemp("tiny_gpt2"), tokenizer=False)


@pytest.fixture(scope="module")
def model(tiny_dir):
    return load_gpt2(local_dir=str(tiny_dir))


def test_save_model_folder_loads_through_path(model, tmp_path):
    sae = tiny_sae()
    sae.save_model(tmp_path / "sae")
    loaded, prov = load_pretrained_sae(path=str(tmp_path / "sae"), model=model)
    assert torch.equal(loaded.W_enc, sae.W_enc) and torch.equal(loaded.b_dec, sae.b_dec)
    assert prov["source"] == "disk" and prov["hook"] == "blocks.0.hook_resid_pre" and prov["d_in"] == D_MODEL
    assert prov["files_sha256"]["sae_weights.safetensors"] == hashlib.sha256(
        (tmp_path / "sae" / "sae_weights.safetensors").read_bytes()).hexdigest()
    _, cache = model.run_with_cache(torch.arange(8)[None], names_filter=prov["hook"])
    assert loaded(cache[prov["hook"]]).shape == (1, 8, D_MODEL)


def test_config_group_file(model, tmp_path):
    tiny_sae().save_model(tmp_path / "sae")
    spec = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "sae" / "pretrained.yaml"))
    spec["path"] = str(tmp_path / "sae")
    sae, prov = from_config(spec, model=model)
    assert sae.cfg.d_in == D_MODEL and prov["path"] == str((tmp_path / "sae").resolve())


def test_wrong_hook_lists_the_model_hooks(model, tmp_path):
    tiny_sae(hook="blocks.7.hook_resid_pre").save_model(tmp_path / "sae")
    with pytest.raises(ConfigError, match=r"'blocks\.7\.hook_resid_pre' does not exist.*blocks\.1\.hook_resid_pre"):
        load_pretrained_sae(path=str(tmp_path / "sae"), model=model)


def test_wrong_width_names_both(model, tmp_path):
    tiny_sae(d_in=48).save_model(tmp_path / "sae")
    with pytest.raises(ConfigError, match=rf"d_in=48 .*blocks\.0\.hook_resid_pre of this model is {D_MODEL} wide"):
        load_pretrained_sae(path=str(tmp_path / "sae"), model=model)


def test_hook_z_sae_width_and_processing(model, tiny_dir, tmp_path):
    # SAELens reshapes hook_z [.., n_heads, d_head] to n_heads * d_head for such SAEs, and loads
    # their model with from_pretrained_no_processing(**model_from_pretrained_kwargs): b_V not folded.
    sae = tiny_sae(hook="blocks.1.attn.hook_z", reshape_activations="hook_z")
    sae.cfg.metadata.model_from_pretrained_kwargs = {"center_writing_weights": False}
    sae.save_model(tmp_path / "sae")
    with pytest.raises(ConfigError, match=r"model\.fold_value_biases=false"):
        load_pretrained_sae(path=str(tmp_path / "sae"), model=model)
    unfolded = load_gpt2(local_dir=str(tiny_dir), fold_value_biases=False)
    _, prov = load_pretrained_sae(path=str(tmp_path / "sae"), model=unfolded)
    assert prov["d_in"] == N_HEADS * (D_MODEL // N_HEADS)


def test_processing_table_is_what_the_model_does(tiny_dir):
    # The processing check trusts PROCESSING_CHANGES: each flag alone changes exactly those hooks.
    off = {flag: False for flag in PROCESSING_DEFAULTS}
    tokens = torch.arange(12)[None] * 777
    _, base = load_gpt2(local_dir=str(tiny_dir), **off).run_with_cache(tokens)
    for flag in off:
        _, cache = load_gpt2(local_dir=str(tiny_dir), **{**off, flag: True}).run_with_cache(tokens)
        changed = {h for h in base.keys() if (cache[h] - base[h]).abs().max() > 1e-4}
        assert changed == {h for h in base.keys() if h.endswith(PROCESSING_CHANGES[flag])}, flag


def test_path_without_weights(tmp_path):
    tiny_sae().save_model(tmp_path / "sae")
    (tmp_path / "sae" / "sae_weights.safetensors").unlink()
    with pytest.raises(DataError, match=r"sae_weights\.safetensors is missing"):
        load_pretrained_sae(path=str(tmp_path / "sae"))


def test_unknown_release_and_id_list_what_exists():
    with pytest.raises(ConfigError, match=r"Closest: \['gpt2-small-res-jb'.*All \d+: \[.*'gemma-scope"):
        load_pretrained_sae("gpt2-small-res-j", "blocks.0.hook_resid_pre")
    with pytest.raises(ConfigError, match=r"13 ids: .*'blocks\.11\.hook_resid_post'"):
        load_pretrained_sae("gpt2-small-res-jb", "blocks.12.hook_resid_pre")


def test_source_must_be_given_once(tmp_path):
    with pytest.raises(ConfigError, match="sae.release and sae.id"):
        load_pretrained_sae()
    with pytest.raises(ConfigError, match="not both"):
        load_pretrained_sae("gpt2-small-res-jb", "blocks.0.hook_resid_pre", path=str(tmp_path))


# SAELens reads the HF cache location and offline flag at import: run the release route in a fresh interpreter.
CACHE_SCRIPT = textwrap.dedent("""
    import json, sys, time, torch
    from interp.errors import ConfigError, DataError
    from interp.models.gpt2 import load_gpt2
    from interp.sae.pretrained import load_pretrained_sae
    out = {}
    sae, out["provenance"] = load_pretrained_sae("gpt2-small-res-jb", "blocks.0.hook_resid_pre",
                                                 model=load_gpt2(local_dir=sys.argv[1]))
    torch.save(sae.state_dict(), sys.argv[2])
    _, prov = load_pretrained_sae("gpt2-small-res-jb", "blocks.11.hook_resid_post")
    out["v6_kwargs"] = prov["model_from_pretrained_kwargs"]
    raw = load_gpt2(local_dir=sys.argv[1], center_writing_weights=False)
    try:
        load_pretrained_sae("gpt2-small-res-jb", "blocks.0.hook_resid_pre", model=raw)
    except ConfigError as e:
        out["processing_error"] = str(e)
    t = time.perf_counter()
    try:
        load_pretrained_sae("gpt2-small-res-jb", "blocks.1.hook_resid_pre")
    except DataError as e:
        out["missing"] = {"seconds": time.perf_counter() - t, "message": str(e)}
    print(json.dumps(out))
""")


def test_release_loads_from_a_prefilled_cache_offline(tiny_dir, tmp_path):
    commit = "fedcba9876543210fedcba9876543210fedcba98"
    folder = hub_snapshot(tmp_path / "hub", JB_REPO, commit) / "blocks.0.hook_resid_pre"
    folder.mkdir()
    sae = tiny_sae()
    # The release's files predate SAELens 6: a flat cfg.json (hook_point, no metadata block).
    (folder / "cfg.json").write_text(json.dumps({
        "model_name": "gpt2-small", "hook_point": "blocks.0.hook_resid_pre", "hook_point_layer": 0,
        "hook_point_head_index": None, "d_in": D_MODEL, "d_sae": 4 * D_MODEL, "dtype": "torch.float32",
        "device": "mps", "context_size": 128, "dataset_path": "Skylion007/openwebtext"}))
    save_file({k: v.contiguous() for k, v in sae.state_dict().items()}, str(folder / "sae_weights.safetensors"))
    # One in today's format (metadata block), for which SAELens skips the directory's model kwargs.
    tiny_sae(hook="blocks.11.hook_resid_post").save_model(folder.parent / "blocks.11.hook_resid_post")
    env = {k: v for k, v in os.environ.items() if k != "TRANSFORMERS_OFFLINE"}
    env.update(HF_HUB_CACHE=str(tmp_path / "hub"), HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", CACHE_SCRIPT, str(tiny_dir), str(tmp_path / "loaded.pt")],
                          check=False, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    loaded = torch.load(tmp_path / "loaded.pt")
    assert all(torch.equal(loaded[k], v) for k, v in sae.state_dict().items())
    prov = out["provenance"]
    assert prov["source"] == "hub" and prov["repo_id"] == JB_REPO and prov["revision"] == commit
    assert prov["model_name"] == "gpt2-small"
    assert prov["model_from_pretrained_kwargs"] == {"center_writing_weights": True}   # from SAELens's directory
    assert set(prov["files_sha256"]) == {"cfg.json", "sae_weights.safetensors"}
    assert out["v6_kwargs"] == {"center_writing_weights": True}
    assert "model.center_writing_weights=true" in out["processing_error"]
    assert out["missing"]["seconds"] < 5
    msg = out["missing"]["message"]
    assert "HF_HUB_OFFLINE is set" in msg and "network access" in msg and "sae.path=/path" in msg, msg
