"""`fedsim export RUN --format csv`: metrics.csv and traffic.csv read back equal the logs."""

import csv

import pytest
import tomli_w

import fedsim
from fedsim.cli import main

TINY = {
    "name": "tiny",
    "rounds": 2,
    "data": {"dataset": "synthetic", "synthetic": {"shape": [6], "train_size": 120}},
    "model": {"name": "mlp"},
    "clients": {"count": 3, "per_round": 2},
}


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def same(cell: str, value) -> bool:
    if value is None:
        return cell == ""
    if isinstance(value, bool) or isinstance(value, str):
        return cell == str(value)
    return float(cell) == pytest.approx(float(value), rel=1e-12)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "run"
    fedsim.run(_scenario(), out=out)
    return out


def _scenario():
    from fedsim.scenario import validate_doc

    return validate_doc(TINY)


def test_csv_read_back_equals_logs(run_dir, capsys):
    assert main(["export", str(run_dir), "--format", "csv"]) == 0
    result = fedsim.load_run(run_dir)
    for table, rows in (("metrics", result.metrics), ("traffic", result.traffic)):
        back = read_csv(run_dir / f"{table}.csv")
        assert len(back) == len(rows) > 0
        for cells, row in zip(back, rows, strict=True):
            assert set(row) <= set(cells)
            assert all(same(cells[k], v) for k, v in row.items()), (table, cells, row)
    capsys.readouterr()
    assert main(["export", str(run_dir)]) == 2  # no overwrite without --force
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--force" in err
    assert main(["export", str(run_dir), "--force", "--out", str(run_dir / "csv")]) == 0
    assert read_csv(run_dir / "csv" / "metrics.csv") == read_csv(run_dir / "metrics.csv")


def test_experiment_folder_exports_each_run(tmp_path):
    exp = fedsim.run_experiment(_scenario(), {"rounds": 1}, out=tmp_path / "e", seeds=[0, 1])
    assert main(["export", str(exp.path)]) == 0
    for name, run in exp.runs.items():
        assert len(read_csv(exp.path / name / "metrics.csv")) == 1
        assert len(read_csv(exp.path / name / "traffic.csv")) == len(run.traffic)


def test_tensorboard_scalars_read_back(tmp_path):
    pytest.importorskip("tensorboard", reason='pip install "fedsim[tensorboard]"')
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    path = tmp_path / "tiny.toml"
    path.write_text(tomli_w.dumps(TINY))
    out, tb = tmp_path / "run", tmp_path / "tb"
    assert main(["run", str(path), "--quiet", "--out", str(out), "--tensorboard", str(tb)]) == 0
    metrics = fedsim.load_run(out).metrics
    acc = EventAccumulator(str(tb / "run")).Reload()
    for key in ("test_accuracy", "train_loss", "bytes_up", "bytes_down_total", "energy_j"):
        by_round = acc.Scalars(f"round/{key}")
        assert [e.step for e in by_round] == [m["round"] for m in metrics]
        by_time = acc.Scalars(f"sim_time_ms/{key}")
        assert [e.step for e in by_time] == [round(m["sim_time"] * 1000) for m in metrics]
        if key in metrics[0]:
            assert [e.value for e in by_round] == pytest.approx([m[key] for m in metrics])
