"""runtime.device: the CPU default changes nothing, "auto" falls back to it, CUDA is refused
in one line where there is none, workers get one GPU each."""

from __future__ import annotations

import pytest
import tomli_w
import torch

import fedsim
from fedsim.cli import main
from fedsim.runtime import device as D

DATA = {"dataset": "synthetic", "synthetic": {"shape": [1, 8, 8], "train_size": 200}}
TINY = {"rounds": 2, "data": DATA, "model": {"name": "mlp"}, "clients": {"count": 6}}

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


def write(tmp_path, **runtime):
    doc = {**TINY, "runtime": runtime} if runtime else TINY
    path = tmp_path / "s.toml"
    path.write_text(tomli_w.dumps(doc))
    return path


@no_cuda
def test_cpu_and_auto_give_the_default_hash(tmp_path):
    hashes = {
        dev: fedsim.run(write(tmp_path, **({"device": dev} if dev else {}))).summary["model_sha256"]
        for dev in (None, "cpu", "auto")
    }
    assert len(set(hashes.values())) == 1, hashes


@no_cuda
@pytest.mark.parametrize("dev", ["cuda", "cuda:1"])
def test_cuda_refused_in_one_line(tmp_path, capsys, dev):
    assert main(["validate", str(write(tmp_path, device=dev))]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "runtime.device" in err and "CUDA" in err


def test_bad_device_name_refused(tmp_path, capsys):
    assert main(["validate", str(write(tmp_path, device="tpu"))]) == 2
    assert "runtime.device" in capsys.readouterr().err


def test_ray_with_cuda_needs_a_gpu_share(monkeypatch):
    from types import SimpleNamespace

    from fedsim.scenario import checks

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    rt = SimpleNamespace(
        device="cuda", executor="ray", ray_num_gpus_per_client=0.0, endpoint=None,
        worker_timeout=10.0, heartbeat_interval=1.0,
    )  # fmt: skip
    with pytest.raises(fedsim.errors.ScenarioError) as e:
        checks._check_runtime(SimpleNamespace(runtime=rt), None)
    assert e.value.field == "runtime.ray_num_gpus_per_client"
    rt.ray_num_gpus_per_client = 0.5
    checks._check_runtime(SimpleNamespace(runtime=rt), None)


def test_workers_get_one_gpu_each(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    monkeypatch.delenv(D.PINNED_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert D.worker_env("cpu", 0) == {}
    got = [D.worker_env("cuda", i)["CUDA_VISIBLE_DEVICES"] for i in range(3)]
    assert got == ["3", "5", "3"]
    assert D.worker_env("cuda:1", 0)["CUDA_VISIBLE_DEVICES"] == "5"
    env = D.worker_env("auto", 1)
    assert env[D.PINNED_ENV] == "1" and env[D.CUBLAS_ENV] == ":4096:8"
    # inside a pinned worker every cuda device is its one GPU
    monkeypatch.setenv(D.PINNED_ENV, "1")
    assert D.resolve_device("cuda:1") == torch.device("cuda", 0)
    monkeypatch.setenv(D.PINNED_ENV, "0")
    assert D.resolve_device("cuda:1") == torch.device("cuda", 1)
    assert D.resolve_device("cpu") == torch.device("cpu")
