"""Bad input: one line on stderr naming the file and the field, exit code 2, no traceback."""

import subprocess
import sys

import pytest

from fedsim.cli import main

BASE = """
name = "t"
rounds = 1
[data]
dataset = "synthetic"
[data.synthetic]
shape = [1, 8, 8]
train_size = 200
test_size = 50
[model]
name = "mlp"
[clients]
count = 4
per_round = 2
"""

CASES = [
    ("unknown key", BASE + "colour = 'red'\n", [], "colour"),
    ("unknown nested key", BASE.replace("[clients]", "[clients]\nsize = 3"), [], "clients.size"),
    ("wrong type", BASE.replace("rounds = 1", 'rounds = "many"'), [], "rounds"),
    ("bad unit", BASE + '[network]\nserver_up = "20 furlongs"\n', [], "network.server_up"),
    ("negative clients", BASE.replace("count = 4", "count = -4"), [], "clients.count"),
    (
        "per_round > clients",
        BASE.replace("per_round = 2", "per_round = 9"),
        [],
        "clients.per_round",
    ),
    ("unknown model", BASE.replace('name = "mlp"', 'name = "transformer9000"'), [], "model.name"),
    (
        "unknown dataset",
        BASE.replace('dataset = "synthetic"', 'dataset = "imagenet"'),
        [],
        "data.dataset",
    ),
    ("unknown algorithm", BASE + '[algorithm]\nname = "fedmagic"\n', [], "algorithm.name"),
    (
        "bad algorithm option",
        BASE + '[algorithm]\nname = "fedprox"\nmu = "big"\n',
        [],
        "algorithm.mu",
    ),
    (
        "unknown algorithm option",
        BASE + '[algorithm]\nname = "fedavg"\nmu = 0.1\n',
        [],
        "algorithm.mu",
    ),
    ("bad override", BASE, ["--set", "clients.count=zero"], "clients.count"),
    ("override unknown key", BASE, ["--set", "train.speed=3"], "train.speed"),
    (
        "bad partition",
        BASE.replace("[model]", "[data2]\n[model]").replace("[data2]\n", "") + "",
        [],
        None,
    ),
    ("toml syntax", BASE + "[[[\n", [], None),
    (
        "missing data files",
        BASE.replace('dataset = "synthetic"', 'dataset = "cifar10"\nroot = "/nonexistent/cifar"'),
        [],
        "data.root",
    ),
    (
        "unknown device profile",
        BASE + '[[network.devices]]\nprofile = "toaster"\n',
        [],
        "network.devices[0].profile",
    ),
    ("bad codec", BASE + '[codec]\nuplink = "q99"\n', [], "codec.uplink"),
    ("ipc without workers", BASE + '[runtime]\ntransport = "ipc"\n', [], "runtime.workers"),
]


@pytest.mark.parametrize("name,text,extra,field", CASES, ids=[c[0] for c in CASES])
def test_bad_scenarios_exit_2_with_one_line(name, text, extra, field, tmp_path, capsys):
    if name == "bad partition":
        text = BASE.replace('dataset = "synthetic"', 'dataset = "synthetic"\npartition = "zigzag"')
        field = "data.partition"
    path = tmp_path / "bad.toml"
    path.write_text(text)
    code = main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet", *extra])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert str(path) in lines[0]
    if field:
        assert field in lines[0], lines[0]
    assert "Traceback" not in err


def test_missing_file_and_bad_flag(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml" in capsys.readouterr().err
    assert main(["run"]) == 2
    assert main(["run", "x.toml", "--workers", "many"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err


def test_real_entry_point_no_traceback(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(BASE + "colour = 'red'\n")
    proc = subprocess.run(
        [sys.executable, "-m", "fedsim", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "colour" in proc.stderr and "Traceback" not in proc.stderr
