"""Ground-truth scoring, the feature probe and the circuit report of the arithmetic MLP, on hand-built
models whose answers are known: a first layer that is exactly the 80 conjunction units
"ptr = i and col[i] = v", and an SAE that is the identity on them."""

import json
import re

import pytest
import torch
from conftest import REPO
from omegaconf import OmegaConf
from sae_lens import StandardSAE, StandardSAEConfig
from sae_lens.saes.sae import SAEMetadata

from interp.analyses import alignment
from interp.analyses.runner import run_analysis
from interp.data import build_datamodule
from interp.models import build_model
from interp.subject import Subject

N_VALUES, HOOK = 4, "blocks.0.hook_post"


@pytest.fixture(scope="module")
def datamodule():
    cfg = OmegaConf.merge(OmegaConf.load(REPO / "conf/data/arithmetic.yaml"),
                          {"num_train": 1024, "num_val": 256, "num_test": 8192})
    dm = build_datamodule(cfg, seed=0)
    dm.setup("validate")
    return dm


def conjunction_mlp() -> torch.nn.Module:
    """Hidden unit 10*i + v fires (exactly 1) iff ptr1 = i and col1[i] = v; unit 40 + 10*i + v iff ptr2 = i
    and col2[i] = v. One-hot input unit of position p, value v is 10*p + v; ptr1 is position 4, ptr2 9."""
    model = build_model({"arch": "arithmetic_mlp", "kind": "regression", "n_values": N_VALUES, "d_hidden": [80, 8]})
    w = torch.zeros(80, 100)
    for side, (col0, ptr_pos) in enumerate(((0, 4), (5, 9))):
        for i in range(N_VALUES):
            for v in range(10):
                unit = 40 * side + 10 * i + v
                w[unit, 10 * ptr_pos + i] = w[unit, 10 * (col0 + i) + v] = 1.0
    with torch.no_grad():
        model.blocks[0].linear.weight.copy_(w)
        model.blocks[0].linear.bias.fill_(-1.0)
    return model.eval()


def identity_sae(d: int = 80) -> StandardSAE:
    sae = StandardSAE(StandardSAEConfig(d_in=d, d_sae=d, metadata=SAEMetadata(hook_name=HOOK)))
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(d))
        sae.W_dec.copy_(torch.eye(d))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae.eval()


def test_conjunction_units_score_one_on_pointer_value_pairs_for_neurons_and_an_identity_sae(datamodule, tmp_path):
    results = run_analysis("alignment", Subject(conjunction_mlp(), datamodule, identity_sae()), tmp_path)
    for source in (f"neurons/{HOOK}", "features"):
        for var in ("ptr1_a", "ptr2_b"):
            assert results[f"{source}/{var}/mean"] == pytest.approx(1.0, abs=1e-5)
            assert results[f"{source}/{var}/dedicated"] == 1.0
        # a conjunction unit is only partly `a` or `ptr1` (a = v holds in 10 conjunctions' rows)
        assert 0.3 < results[f"{source}/a/mean"] < 0.6 and results[f"{source}/ptr1/dedicated"] == 0.0
    assert results["sae_minus_neurons"] == pytest.approx(0.0, abs=1e-6)
    assert results["neurons/hook_input/raw/mean"] == pytest.approx(1.0, abs=1e-5)   # the one-hot input itself
    saved = json.loads((tmp_path / "alignment.json").read_text())
    row = next(r for r in saved["values"]["features"] if r["variable"] == "ptr1_a" and r["value"] == 27)
    assert row["unit"] == 27   # (ptr1 = 2, a = 7) is unit 10 * 2 + 7
    assert "| ptr1_a | " in (tmp_path / "alignment.md").read_text()


def test_a_shuffled_feature_matrix_scores_near_chance(datamodule):
    x = torch.as_tensor(datamodule.test_ds.arrays["x"])
    acts = alignment.hook_activations(conjunction_mlp(), x)[HOOK]
    shuffled = acts[torch.randperm(len(acts), generator=torch.Generator().manual_seed(0))]
    summary = alignment.score(shuffled, alignment.task_variables(x)).summary()
    assert all(summary[v]["mean"] < 0.1 and summary[v]["dedicated"] == 0 for v in alignment.SUMMARY_VARIABLES)


def test_alignment_on_a_plain_mlp_scores_its_neurons_only(datamodule, tmp_path):
    results = run_analysis("alignment", Subject(conjunction_mlp(), datamodule), tmp_path, {"n_samples": 2048})
    assert "features/task/mean" not in results and f"neurons/{HOOK}/task/mean" in results


SEED = [8, 9, 5, 1, 3, 2, 9, 4, 7, 1]   # a = col1[3] = 1, b = col2[1] = 9: units 31 and 40 + 19


def test_probe_top_features_are_a_direct_computation_with_ground_truth_labels(datamodule, tmp_path, capsys):
    model, sae = conjunction_mlp(), identity_sae()
    results = run_analysis("feature_probe", Subject(model, datamodule, sae), tmp_path, {"x": SEED, "top_k": 5})
    _, cache = model.run_with_cache(torch.tensor([SEED]))
    direct = sae.encode(cache[HOOK])[0]
    probe = json.loads((tmp_path / "probe.json").read_text())
    assert [t["feature"] for t in probe["top_features"]] == direct.topk(2).indices.tolist() and \
        sorted(t["feature"] for t in probe["top_features"]) == [31, 59]
    assert {t["label"] for t in probe["top_features"]} == {"ptr1_a=31", "ptr2_b=19"}
    assert all(t["corr"] == pytest.approx(1.0, abs=1e-5) for t in probe["top_features"])
    assert results["expected"] == 8.0 and results["active_features"] == 2
    assert results["mlp_output"] == pytest.approx(float(model(torch.tensor([SEED])).detach()[0]))
    assert "Number of active SAE features: 2" in capsys.readouterr().out


@pytest.mark.parametrize("x,message", [(SEED[:9], "x has 9 numbers"), ([*SEED[:9], 12], "not a digit 0-9"),
                                       ([8, 9, 5, 1, 4, 2, 9, 4, 7, 1], "ptr1=4 (x[4]) points beyond"),
                                       ("8951", "not a list of integers"), (8, "not a list of integers")])
def test_probe_and_circuit_refuse_bad_inputs_naming_the_layout(datamodule, tmp_path, x, message):
    from interp.errors import ConfigError

    for name in ("feature_probe", "circuit"):
        with pytest.raises(ConfigError, match=re.escape(message)) as e:
            run_analysis(name, Subject(conjunction_mlp(), datamodule, identity_sae()), tmp_path, {"x": x})
        assert "Fix: pass x=[8,9,5,1,3,2,9,4,7,1]" in str(e.value)


def test_ground_truth_analyses_skip_other_models(tmp_path, capsys):
    lm = build_model({"arch": "kgram", "kind": "lm", "d_vocab": 16, "k": 2, "d_embed": 4, "d_hidden": 8, "n_layers": 1})
    for name in ("alignment", "feature_probe", "circuit"):
        assert run_analysis(name, Subject(lm, None, identity_sae()), tmp_path / name) is None
    out = capsys.readouterr().out
    assert out.count("is not the arithmetic MLP") == 3 and "skipped feature_probe:" in out


def test_circuit_sankey_links_sum_to_the_traced_values_and_the_page_is_offline(datamodule, tmp_path):

    model, sae = conjunction_mlp(), identity_sae()
    with torch.no_grad():   # a second layer and output that mix the units, so every stage carries signal
        model.blocks[1].linear.weight.copy_(torch.randn(8, 80, generator=torch.Generator().manual_seed(0)))
        model.blocks[1].linear.bias.fill_(0.5)
    results = run_analysis("circuit", Subject(model, datamodule, sae), tmp_path, {"x": SEED, "n_samples": 2048})
    row = torch.tensor([SEED])
    _, cache = model.run_with_cache(row)
    direct = {"n": cache[HOOK][0], "u": cache["blocks.1.hook_post"][0], "output": cache["hook_out"]}
    import csv

    links = list(csv.DictReader((tmp_path / "sankey.csv").open()))
    into: dict[str, float] = {}
    for link in links:
        into[link["target"]] = into.get(link["target"], 0.0) + float(link["value"])
    assert any(t.startswith("u") for t in into) and "output" in into
    for target, total in into.items():
        kind = "output" if target == "output" else target[0]
        index = 0 if kind == "output" else int(target[1:].split()[0])
        expected = direct[kind][index] if kind != "f" else direct["n"][index]   # identity SAE: feature = unit
        assert total == pytest.approx(float(expected), abs=1e-4), target
    trace = list(csv.DictReader((tmp_path / "circuit_trace.csv").open()))
    edge = next(r for r in trace if r["source"] == "ptr1=3" and r["target"].startswith("n31 "))
    assert float(edge["contribution"]) == 1.0   # W0[31, ptr1=3] on the input, neuron 31 active
    assert results["output_with_sae"] == pytest.approx(float(cache["hook_out"][0]), abs=1e-5)
    html = (tmp_path / "circuit_report.html").read_text()
    assert "<script src=" not in html and "Plotly.newPlot" in html and html.count("Plotly.newPlot") == 3
    assert {"logic_map.csv", "norms.csv"} <= {p.name for p in tmp_path.iterdir()}
