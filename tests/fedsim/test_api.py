"""The Python API: fedsim.run / run_experiment / load_scenario / load_run, model.safetensors."""

import gc
import json
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w

import fedsim
from fedsim.cli import main
from fedsim.errors import FedsimError, ScenarioError
from fedsim.runtime.model_io import load_model, save_model, saved_model_sha256
from fedsim.runtime.outputs import model_sha256

REPO = Path(__file__).resolve().parents[2]

# a synthetic 8x8 problem, an MLP, 4 clients: two rounds in a second or two
TINY = {
    "name": "tiny",
    "rounds": 2,
    "data": {"dataset": "synthetic", "synthetic": {"shape": [1, 8, 8], "train_size": 200}},
    "model": {"name": "mlp"},
    "clients": {"count": 4, "per_round": 2},
}


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(tomli_w.dumps(TINY))
    return path


def test_import_is_light():
    code = "import sys, fedsim; fedsim.__version__; fedsim.load_run; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        fedsim.nothing  # noqa: B018


def test_run_matches_cli(tiny, tmp_path):
    res = fedsim.run(tiny, out=tmp_path / "api")
    assert main(["run", str(tiny), "--out", str(tmp_path / "cli"), "--quiet"]) == 0
    cli = json.loads((tmp_path / "cli" / "summary.json").read_text())
    assert res.summary["model_sha256"] == cli["model_sha256"]
    assert [r["round"] for r in res.metrics] == [1, 2]
    assert res.traffic and {"kind", "wire_bytes"} <= set(res.traffic[0])
    assert [e["event"] for e in res.events][-1] == "end"
    # the saved model (API and CLI) hashes to model_sha256, in the metadata too
    assert model_sha256(res.model_state) == res.summary["model_sha256"]
    assert model_sha256(load_model(tmp_path / "cli")) == cli["model_sha256"]
    assert saved_model_sha256(res.model_file) == res.summary["model_sha256"]
    model = res.build_model()
    assert model_sha256(model.state_dict()) == res.summary["model_sha256"]
    again = fedsim.load_run(tmp_path / "api")
    assert isinstance(again, fedsim.RunResult) and again.metrics == res.metrics
    assert again.scenario.name == "tiny"


def test_overrides_mapping_and_strings_agree(tiny):
    a = fedsim.load_scenario(tiny, {"rounds": 1, "train": {"lr": 0.1}, "codec.uplink": "q8"})
    b = fedsim.load_scenario(tiny, ["rounds=1", "train.lr=0.1", 'codec.uplink="q8"'])
    assert a == b and a.rounds == 1 and a.codec.uplink == "q8"
    assert fedsim.load_scenario(a, {"rounds": 3}).rounds == 3  # a Scenario object
    with pytest.raises(ScenarioError, match="train.lr"):
        fedsim.load_scenario(tiny, {"train.lr": -1})
    with pytest.raises(ScenarioError, match="model.name"):
        fedsim.load_scenario(tiny, {"model.name": "nonet"})


def test_temporary_out_and_progress(tiny):
    rows = []
    res = fedsim.run(tiny, {"rounds": 1}, progress=rows.append)
    path = res.path
    assert path.exists() and [r["round"] for r in rows] == [1]
    frame = pytest.importorskip("pandas") and res.to_pandas()
    assert list(frame["round"]) == [1]
    assert len(res.to_pandas("traffic")) == len(res.traffic)
    del res, frame
    gc.collect()
    assert not path.exists()  # the temporary folder goes with the result


def test_refuses_variants_and_non_empty_out(tiny, tmp_path):
    with pytest.raises(ScenarioError, match="run_experiment"):
        fedsim.run(tiny, ["variants=[{name='a', rounds=1}]"])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(FedsimError, match="not empty"):
        fedsim.run(tiny, out=tmp_path / "full")
    with pytest.raises(FedsimError, match="not a run directory"):
        fedsim.load_run(tmp_path / "full")


def test_run_experiment_sweep_and_seeds(tiny, tmp_path):
    exp = fedsim.run_experiment(
        tiny, {"rounds": 1}, out=tmp_path / "exp", sweep={"train.lr": [0.05, 0.1]}, seeds=[0, 1]
    )
    names = ["lr-0.05/seed-0", "lr-0.05/seed-1", "lr-0.1/seed-0", "lr-0.1/seed-1"]
    assert list(exp) == names  # OUT/<variant>/seed-N, as fedsim run --seeds
    assert exp["lr-0.1/seed-1"].path == tmp_path / "exp" / "lr-0.1" / "seed-1"
    assert exp["lr-0.1/seed-1"].scenario.seed == 1
    assert exp["lr-0.1/seed-1"].scenario.train.lr == 0.1
    hashes = {n: exp[n].summary["model_sha256"] for n in names}
    assert len(set(hashes.values())) == 4
    single = fedsim.run(tiny, {"rounds": 1, "seed": 1, "train.lr": 0.1})
    assert single.summary["model_sha256"] == hashes["lr-0.1/seed-1"]
    assert [g["run"] for g in exp.comparison["groups"]] == ["lr-0.05", "lr-0.1"]
    loaded = fedsim.load_run(tmp_path / "exp")
    assert isinstance(loaded, fedsim.ExperimentResult) and list(loaded) == names
    pd = pytest.importorskip("pandas")
    table = loaded.to_pandas()
    assert isinstance(table, pd.DataFrame) and list(table["run"]) == names
    assert set(loaded.to_pandas("metrics")["run"]) == set(names)


def test_save_model_round_trip(tmp_path):
    import torch

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    sd = net.state_dict()
    path = save_model(tmp_path / "m.safetensors", sd)
    back = load_model(path)
    assert model_sha256(back) == model_sha256(sd) == saved_model_sha256(path)
    assert back["1.num_batches_tracked"].dtype == torch.int64
    (tmp_path / "bad.safetensors").write_bytes(b"not a model")
    with pytest.raises(FedsimError, match="bad.safetensors"):
        load_model(tmp_path / "bad.safetensors")


def test_example_script(tmp_path):
    out = subprocess.run(
        [sys.executable, str(REPO / "examples" / "quickstart_api.py"), "--rounds", "1"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "matches summary.json's model_sha256" in out.stdout
