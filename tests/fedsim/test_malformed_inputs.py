"""A corpus of malformed inputs (issue 17): scenario files, `--set` values, flags, trace
files, endpoints and run directories. Each goes through the CLI and must exit 2 with one
line on stderr naming the file (or flag) and the field, and no traceback.

Most cases run `fedsim validate` in process (fast); a few go through the real entry point.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import fedsim.scenario.memory as memory
from fedsim.cli import main

# The small valid scenario of the original 19 cases (same folder, on pytest's sys.path).
from test_cli_errors import BASE  # isort: skip


# The memory estimate compares against this machine's memory; pin it so that the refusals
# below do not depend on the size of the machine running the tests.
PINNED_MEMORY = 64 * 10**9
REAL_MACHINE_MEMORY = memory.machine_memory


def sub(old: str, new: str) -> str:
    assert old in BASE
    return BASE.replace(old, new)


def table(name: str, body: str) -> str:
    return BASE + f"[{name}]\n{body}\n"


TRACE = '[network.availability]\nmodel = "trace"\ntrace = "{trace}"\n'
TCP = '[runtime]\ntransport = "tcp"\nworkers = 1\n'
IPC = '[runtime]\ntransport = "ipc"\nworkers = 1\n'
LONG_IPC = "ipc:///" + "a" * 120

# (id, scenario text, --set overrides, field the one line must name, trace file or None)
# A trace file (name, text) is written beside the scenario and named in it as {trace}.
SCENARIOS: list[tuple[str, str, list[str], str, tuple[str, str] | None]] = [
    # strict types: no bool or string for a number, no float for an int, nothing non-finite
    ("rounds bool", sub("rounds = 1", "rounds = true"), [], "rounds", None),
    ("rounds float", sub("rounds = 1", "rounds = 1.0"), [], "rounds", None),
    ("rounds zero", sub("rounds = 1", "rounds = 0"), [], "rounds", None),
    ("seed negative", sub("rounds = 1", "rounds = 1\nseed = -1"), [], "seed", None),
    ("seed string", sub("rounds = 1", 'rounds = 1\nseed = "7"'), [], "seed", None),
    ("count bool", sub("count = 4", "count = true"), [], "clients.count", None),
    ("per_round string", sub("per_round = 2", 'per_round = "2"'), [], "clients.per_round", None),
    ("shape string item", sub("[1, 8, 8]", '[1, "8", 8]'), [], "data.synthetic.shape", None),
    ("shape float item", sub("[1, 8, 8]", "[1, 8.0, 8]"), [], "data.synthetic.shape", None),
    ("shape empty", sub("[1, 8, 8]", "[]"), [], "data.synthetic.shape", None),
    ("shape zero", sub("[1, 8, 8]", "[0, 8, 8]"), [], "data.synthetic.shape", None),
    ("classes one", sub("test_size = 50", "test_size = 50\nclasses = 1"), [], "classes", None),
    ("lr inf", table("train", "lr = inf"), [], "train.lr", None),
    ("lr nan", table("train", "lr = nan"), [], "train.lr", None),
    ("lr negative", table("train", "lr = -0.1"), [], "train.lr", None),
    ("lr string", table("train", 'lr = "0.1"'), [], "train.lr", None),
    ("lr bool", table("train", "lr = true"), [], "train.lr", None),
    ("momentum one", table("train", "momentum = 1.0"), [], "train.momentum", None),
    ("batch zero", table("train", "batch_size = 0"), [], "train.batch_size", None),
    ("optimizer unknown", table("train", 'optimizer = "lbfgs"'), [], "train.optimizer", None),
    ("local_steps float", table("train", "local_steps = 2.5"), [], "train.local_steps", None),
    ("description int", sub("rounds = 1", "rounds = 1\ndescription = 3"), [], "description", None),
    (
        "download string",
        sub('dataset = "synthetic"', 'dataset = "synthetic"\ndownload = "yes"'),
        [],
        "data.download",
        None,
    ),
    (
        "alpha zero",
        sub('dataset = "synthetic"', 'dataset = "synthetic"\nalpha = 0'),
        [],
        "data.alpha",
        None,
    ),
    # the memory estimate refuses before anything is allocated
    (
        "train_size huge",
        sub("train_size = 200", "train_size = 1000000000"),
        [],
        "data.synthetic.train_size",
        None,
    ),
    ("shape huge", sub("[1, 8, 8]", "[3, 4096, 4096]"), [], "data.synthetic.shape", None),
    (
        "hidden huge",
        sub('name = "mlp"', 'name = "mlp"\nargs = {hidden = [1000000, 1000000]}'),
        [],
        "model.args",
        None,
    ),
    (
        "hidden negative",
        sub('name = "mlp"', 'name = "mlp"\nargs = {hidden = [-5]}'),
        [],
        "model.args",
        None,
    ),
    (
        "hidden word",
        sub('name = "mlp"', 'name = "mlp"\nargs = {hidden = "wide"}'),
        [],
        "model.args",
        None,
    ),
    (
        "model arg unknown",
        sub('name = "mlp"', 'name = "mlp"\nargs = {depth = 3}'),
        [],
        "model.args.depth",
        None,
    ),
    # availability periods > 0
    (
        "markov mean_on zero",
        table("network.availability", 'model = "markov"\nmean_on = 0'),
        [],
        "network.availability.mean_on",
        None,
    ),
    (
        "markov mean_off 0s",
        table("network.availability", 'model = "markov"\nmean_off = "0s"'),
        [],
        "network.availability.mean_off",
        None,
    ),
    (
        "markov mean_on negative",
        table("network.availability", "mean_on = -5"),
        [],
        "network.availability.mean_on",
        None,
    ),
    (
        "markov mean_on word",
        table("network.availability", 'mean_on = "often"'),
        [],
        "network.availability.mean_on",
        None,
    ),
    # trace files: present, readable, within the population
    (
        "trace unset",
        table("network.availability", 'model = "trace"'),
        [],
        "network.availability.trace",
        None,
    ),
    (
        "trace missing",
        BASE + TRACE.replace("{trace}", "nope.csv"),
        [],
        "network.availability.trace",
        None,
    ),
    (
        "trace id beyond count",
        BASE + TRACE,
        [],
        "network.availability.trace",
        ("t.csv", "client_id,start,end\n0,0,10\n99,0,10\n"),
    ),
    (
        "trace id equal count",
        BASE + TRACE,
        [],
        "network.availability.trace",
        ("t.json", '{"0": [[0, 10]], "4": [[0, 10]]}'),
    ),
    ("trace id negative", BASE + TRACE, [], "network.availability.trace", ("t.csv", "-1,0,10\n")),
    (
        "trace short row",
        BASE + TRACE,
        [],
        "network.availability.trace",
        ("t.csv", "client_id,start,end\n0,10\n"),
    ),
    (
        "trace bad number",
        BASE + TRACE,
        [],
        "network.availability.trace",
        ("t.csv", "client_id,start,end\n0,0,10\n1,soon,10\n"),
    ),
    (
        "trace end before start",
        BASE + TRACE,
        [],
        "network.availability.trace",
        ("t.csv", "0,10,5\n"),
    ),
    ("trace json list", BASE + TRACE, [], "network.availability.trace", ("t.json", "[[0, 10]]")),
    (
        "trace json bad key",
        BASE + TRACE,
        [],
        "network.availability.trace",
        ("t.json", '{"abc": [[0, 10]]}'),
    ),
    (
        "trace json syntax",
        BASE + TRACE,
        [],
        "network.availability.trace",
        ("t.json", '{"0": [[0, 10]]'),
    ),
    (
        "trace json pairs",
        BASE + TRACE,
        [],
        "network.availability.trace",
        ("t.json", '{"0": [0, 10]}'),
    ),
    ("trace suffix", BASE + TRACE, [], "network.availability.trace", ("t.txt", "0,0,10\n")),
    ("trace empty", BASE + TRACE, [], "network.availability.trace", ("t.csv", "")),
    ("trace not utf8", BASE + TRACE, [], "network.availability.trace", ("t.json", "\udcff")),
    # endpoints and timeouts
    (
        "endpoint octet 256",
        BASE + TCP + 'endpoint = "tcp://256.1.1.1:5555"\n',
        [],
        "runtime.endpoint",
        None,
    ),
    (
        "endpoint no port",
        BASE + TCP + 'endpoint = "tcp://localhost"\n',
        [],
        "runtime.endpoint",
        None,
    ),
    (
        "endpoint port range",
        BASE + TCP + 'endpoint = "tcp://127.0.0.1:70000"\n',
        [],
        "runtime.endpoint",
        None,
    ),
    (
        "endpoint port word",
        BASE + TCP + 'endpoint = "tcp://127.0.0.1:http"\n',
        [],
        "runtime.endpoint",
        None,
    ),
    (
        "endpoint bad host",
        BASE + TCP + 'endpoint = "tcp://bad_host!:5555"\n',
        [],
        "runtime.endpoint",
        None,
    ),
    (
        "endpoint not local",
        BASE + TCP + 'endpoint = "tcp://192.0.2.1:5555"\n',
        [],
        "runtime.endpoint",
        None,
    ),
    ("endpoint ipc empty", BASE + IPC + 'endpoint = "ipc://"\n', [], "runtime.endpoint", None),
    (
        "endpoint ipc too long",
        BASE + IPC + f'endpoint = "{LONG_IPC}"\n',
        [],
        "runtime.endpoint",
        None,
    ),
    (
        "endpoint wrong scheme",
        BASE + TCP + 'endpoint = "udp://127.0.0.1:5555"\n',
        [],
        "runtime.endpoint",
        None,
    ),
    (
        "worker_timeout zero",
        table("runtime", "worker_timeout = 0"),
        [],
        "runtime.worker_timeout",
        None,
    ),
    (
        "worker_timeout 2x heartbeat",
        table("runtime", "worker_timeout = 2\nheartbeat_interval = 1"),
        [],
        "runtime.worker_timeout",
        None,
    ),
    (
        "heartbeat word",
        table("runtime", 'heartbeat_interval = "1 fortnight"'),
        [],
        "runtime.heartbeat_interval",
        None,
    ),
    ("workers bool", table("runtime", "workers = true"), [], "runtime.workers", None),
    (
        "torch_threads zero",
        table("runtime", "torch_threads = 0"),
        [],
        "runtime.torch_threads",
        None,
    ),
    (
        "checkpoint_every negative",
        table("runtime", "checkpoint_every = -1"),
        [],
        "runtime.checkpoint_every",
        None,
    ),
    # network and server
    ("server_up zero", table("network", "server_up = 0"), [], "network.server_up", None),
    ("server_up bool", table("network", "server_up = true"), [], "network.server_up", None),
    (
        "bandwidth_factor above 1",
        table("network", "bandwidth_factor = 1.5"),
        [],
        "network.bandwidth_factor",
        None,
    ),
    (
        "message_overhead negative",
        table("network", 'message_overhead = "-1ms"'),
        [],
        "network.message_overhead",
        None,
    ),
    (
        "message_overhead negative number",
        table("network", "message_overhead = -0.001"),
        [],
        "network.message_overhead",
        None,
    ),
    ("devices empty", table("network", "devices = []"), [], "network.devices", None),
    (
        "device share word",
        BASE + '[[network.devices]]\nshare = "big"\n',
        [],
        "network.devices.0.share",
        None,
    ),
    (
        "device loss one",
        BASE + "[[network.devices]]\nloss = 1.0\n",
        [],
        "network.devices.0.loss",
        None,
    ),
    ("overcommit below 1", table("server", "overcommit = 0.5"), [], "server.overcommit", None),
    ("deadline negative", table("server", 'deadline = "-1s"'), [], "server.deadline", None),
    ("mode unknown", table("server", 'mode = "semi"'), [], "server.mode", None),
    ("target above 1", table("eval", "target_accuracy = 1.5"), [], "eval.target_accuracy", None),
    ("eval every zero", table("eval", "every = 0"), [], "eval.every", None),
    ("ptq unknown", table("eval", 'ptq = ["W99"]'), [], "eval.ptq", None),
    ("codec int", table("codec", "uplink = 8"), [], "codec.uplink", None),
    ("codec unknown", table("codec", 'downlink = "zzz"'), [], "codec.downlink", None),
    # variant names: folders inside --out, unique, never outside it
    ("variant dotdot", BASE + '[[variants]]\nname = ".."\n', [], "variants.0.name", None),
    ("variant dot", BASE + '[[variants]]\nname = "."\n', [], "variants.0.name", None),
    ("variant slash", BASE + '[[variants]]\nname = "a/../../b"\n', [], "variants.0.name", None),
    ("variant absolute", BASE + '[[variants]]\nname = "/tmp/x"\n', [], "variants.0.name", None),
    ("variant empty", BASE + '[[variants]]\nname = ""\n', [], "variants.0.name", None),
    ("variant hidden", BASE + '[[variants]]\nname = ".hidden"\n', [], "variants.0.name", None),
    ("variant space", BASE + '[[variants]]\nname = "a b"\n', [], "variants.0.name", None),
    ("variant int", BASE + "[[variants]]\nname = 5\n", [], "variants.0.name", None),
    ("variant missing name", BASE + "[[variants]]\nrounds = 2\n", [], "variants.0.name", None),
    (
        "variant duplicate",
        BASE + '[[variants]]\nname = "a"\n[[variants]]\nname = "a"\n',
        [],
        "variants.1.name",
        None,
    ),
    (
        "variant duplicate case",
        BASE + '[[variants]]\nname = "A"\n[[variants]]\nname = "a"\n',
        [],
        "variants.1.name",
        None,
    ),
    ("variant reserved", BASE + '[[variants]]\nname = "compare"\n', [], "variants.0.name", None),
    ("variant bad value", BASE + '[[variants]]\nname = "v"\nrounds = true\n', [], "rounds", None),
    # --set values
    ("set bool for int", BASE, ["--set", "rounds=true"], "rounds", None),
    (
        "set string item",
        BASE,
        ["--set", 'data.synthetic.shape=[1,"8",8]'],
        "data.synthetic.shape",
        None,
    ),
    ("set inf", BASE, ["--set", "train.lr=inf"], "train.lr", None),
    ("set no equals", BASE, ["--set", "rounds"], "--set", None),
    ("set empty key", BASE, ["--set", "=3"], "--set", None),
    ("set empty part", BASE, ["--set", "train..lr=1"], "--set", None),
    ("set into a number", BASE, ["--set", "clients.count.x=1"], "clients.count.x", None),
    ("set table to number", BASE, ["--set", "clients=3"], "clients", None),
    ("set huge hidden", BASE, ["--set", "model.args.hidden=[1000000,1000000]"], "model.args", None),
    (
        "set mean_on zero",
        BASE,
        ["--set", 'network.availability.mean_on="0ms"'],
        "network.availability.mean_on",
        None,
    ),
]


@pytest.fixture(autouse=True)
def _pinned_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "machine_memory", lambda: PINNED_MEMORY)


def assert_one_line(code: int, err: str, *names: str) -> str:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


@pytest.mark.parametrize(
    "text,extra,field,trace", [c[1:] for c in SCENARIOS], ids=[c[0] for c in SCENARIOS]
)
def test_validate_refuses_with_one_line(text, extra, field, trace, tmp_path, capsys):
    if trace is not None:
        name, body = trace
        (tmp_path / name).write_bytes(body.encode("utf-8", "surrogateescape"))
        text = text.replace("{trace}", name)
    path = tmp_path / "bad.toml"
    path.write_text(text)
    code = main(["validate", str(path), *extra])
    out, err = capsys.readouterr()
    assert_one_line(code, err, str(path), field)
    assert "ok" not in out


def test_corpus_size():
    assert len(SCENARIOS) + len(FLAGS) + len(RUN_DIRS) >= 60 + 30


def _run_dir(tmp_path: Path, metrics: str = "", traffic: str | None = None) -> Path:
    d = tmp_path / "run"
    d.mkdir()
    (d / "metrics.jsonl").write_text(metrics or '{"round": 1, "test_accuracy": 0.5}\n')
    if traffic is not None:
        (d / "traffic.jsonl").write_text(traffic)
    return d


GOOD_TRAFFIC = (
    '{"seq": 0, "round": 1, "kind": "model", "client": 0, "payload_bytes": 10,'
    ' "wire_bytes": 12, "dropped": false}\n'
)

# (id, command after `fedsim`, with {dir} a temporary folder; what the one line must name)
FLAGS: list[tuple[str, list[str], list[str]]] = [
    ("scenario is a directory", ["validate", "{dir}"], ["{dir}", "directory"]),
    ("run scenario is a directory", ["run", "{dir}", "--out", "{dir}/o"], ["{dir}", "directory"]),
    ("scenario not utf8", ["validate", "{dir}/latin1.toml"], ["latin1.toml", "UTF-8"]),
    ("worker not an endpoint", ["worker", "--connect", "not-an-endpoint"], ["--connect"]),
    ("worker octet 256", ["worker", "--connect", "tcp://256.1.1.1:5555"], ["--connect", "256"]),
    ("worker wildcard host", ["worker", "--connect", "tcp://*:5555"], ["--connect"]),
    ("worker port zero", ["worker", "--connect", "tcp://127.0.0.1:0"], ["--connect"]),
    ("worker ipc empty", ["worker", "--connect", "ipc://"], ["--connect"]),
    ("worker pgm scheme", ["worker", "--connect", "pgm://eth0;239.1.1.1:5555"], ["--connect"]),
    (
        "worker timeout below 2 heartbeats",
        ["worker", "--connect", "tcp://127.0.0.1:5555", "--timeout", "1"],
        ["--timeout"],
    ),
    (
        "worker threads zero",
        ["worker", "--connect", "tcp://127.0.0.1:5555", "--threads", "0"],
        ["--threads"],
    ),
    ("worker threads word", ["worker", "--connect", "tcp://h:1", "--threads", "x"], ["--threads"]),
    ("run rounds flag zero", ["run", "{dir}/ok.toml", "--rounds", "0"], ["ok.toml", "rounds"]),
    ("run seed negative", ["run", "{dir}/ok.toml", "--seed", "-1"], ["ok.toml", "seed"]),
    ("run workers negative", ["run", "{dir}/ok.toml", "--workers", "-2"], ["runtime.workers"]),
    ("run transport unknown", ["run", "{dir}/ok.toml", "--transport", "udp"], ["--transport"]),
    ("run sweep without values", ["run", "{dir}/ok.toml", "--sweep", "train.lr"], ["--sweep"]),
    (
        "run sweep repeats a value",
        ["run", "{dir}/ok.toml", "--out", "{dir}/o", "--sweep", "train.lr=0.1,0.1"],
        ["ok.toml", "variants.1.name"],
    ),
    ("run unknown variant", ["run", "{dir}/ok.toml", "--variant", "nope"], ["--variant"]),
    ("run resume without out", ["run", "{dir}/ok.toml", "--resume"], ["--resume", "--out"]),
    ("run out is a file", ["run", "{dir}/ok.toml", "--out", "{dir}/ok.toml"], ["--out"]),
    ("list unknown section", ["list", "bogus"], ["bogus"]),
    ("unknown command", ["frobnicate"], ["frobnicate"]),
]

# (id, command with {run} a run directory made from the metrics/traffic text, names)
RUN_DIRS: list[tuple[str, list[str], str, str | None, list[str]]] = [
    ("report missing dir", ["report", "{dir}/nothing"], "", None, ["nothing"]),
    ("report on a file", ["report", "{dir}/ok.toml"], "", None, ["ok.toml"]),
    (
        "report corrupt line",
        ["report", "{run}"],
        '{"round": 1}\n{oops\n{"round": 3}\n',
        None,
        ["metrics.jsonl", "line 2"],
    ),
    ("report row not object", ["report", "{run}"], "[1, 2]\n", None, ["metrics.jsonl", "line 1"]),
    (
        "report round string",
        ["report", "{run}"],
        '{"round": "x"}\n',
        None,
        ["metrics.jsonl", "round"],
    ),
    (
        "report accuracy string",
        ["report", "{run}"],
        '{"round": 1, "test_accuracy": "high"}\n',
        None,
        ["metrics.jsonl", "test_accuracy"],
    ),
    ("traffic missing dir", ["traffic", "{dir}/nothing"], "", None, ["nothing"]),
    ("traffic no log", ["traffic", "{run}"], "", None, ["traffic.jsonl"]),
    (
        "traffic bytes string",
        ["traffic", "{run}"],
        "",
        GOOD_TRAFFIC.replace("10,", '"ten",'),
        ["traffic.jsonl", "payload_bytes"],
    ),
    (
        "traffic missing kind",
        ["traffic", "{run}"],
        "",
        GOOD_TRAFFIC.replace('"kind": "model", ', ""),
        ["traffic.jsonl", "kind"],
    ),
    (
        "traffic corrupt line",
        ["traffic", "{run}"],
        "",
        "{oops\n" + GOOD_TRAFFIC,
        ["traffic.jsonl", "line 1"],
    ),
    ("compare missing dir", ["compare", "{dir}/nothing"], "", None, ["nothing"]),
    ("compare target above 1", ["compare", "{run}", "--target", "5"], "", None, ["--target"]),
]


def _make(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "ok.toml").write_text(BASE)
    (tmp_path / "latin1.toml").write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    return {"dir": str(tmp_path)}


@pytest.mark.parametrize("argv,names", [c[1:] for c in FLAGS], ids=[c[0] for c in FLAGS])
def test_flags_refused_with_one_line(argv, names, tmp_path, capsys):
    subs = _make(tmp_path)
    code = main([a.format(**subs) for a in argv])
    assert_one_line(code, capsys.readouterr().err, *(n.format(**subs) for n in names))


@pytest.mark.parametrize(
    "argv,metrics,traffic,names", [c[1:] for c in RUN_DIRS], ids=[c[0] for c in RUN_DIRS]
)
def test_run_dirs_refused_with_one_line(argv, metrics, traffic, names, tmp_path, capsys):
    subs = _make(tmp_path)
    subs["run"] = str(_run_dir(tmp_path, metrics, traffic))
    code = main([a.format(**subs) for a in argv])
    assert_one_line(code, capsys.readouterr().err, *(n.format(**subs) for n in names))


def test_devices_json_corrupt(tmp_path, capsys):
    run = _run_dir(tmp_path, traffic=GOOD_TRAFFIC)
    (run / "devices.json").write_text('{"devices": [{"client": "zero"}]}')
    code = main(["traffic", str(run), "--by", "profile"])
    assert_one_line(code, capsys.readouterr().err, "devices.json")


# Through the real entry point: what a shell user sees, exit code included.
def _fedsim(*argv: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fedsim", *argv], capture_output=True, text=True, timeout=120, **kw
    )


def test_entry_point_directory_and_endpoint(tmp_path):
    proc = _fedsim("validate", str(tmp_path))
    assert_one_line(proc.returncode, proc.stderr, str(tmp_path), "directory")
    proc = _fedsim("worker", "--connect", "not-an-endpoint")
    assert_one_line(proc.returncode, proc.stderr, "--connect")


def test_list_into_a_closed_pipe_exits_quietly():
    proc = subprocess.run(
        f"{sys.executable} -m fedsim list | head -3; exit ${{PIPESTATUS[0]}}",
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert len(proc.stdout.splitlines()) == 3


def test_unexpected_error_asks_for_a_bug_report(monkeypatch, capsys):
    import fedsim.cli as cli

    def boom(args):
        raise KeyError("surprise")

    monkeypatch.setattr(cli, "cmd_list", boom)
    monkeypatch.delenv("FEDSIM_DEBUG", raising=False)
    assert main(["list"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "bug" in err and "FEDSIM_DEBUG" in err
    monkeypatch.setenv("FEDSIM_DEBUG", "1")
    assert main(["list"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "surprise" in err


def test_memory_estimate_of_a_small_run_fits():
    from fedsim.scenario import validate_doc

    total, parts = memory.estimate(validate_doc({"data": {"dataset": "synthetic"}}))
    assert 0 < total < 10**9
    assert "clients.per_round" in parts and any(k.startswith("data.synthetic") for k in parts)
    assert REAL_MACHINE_MEMORY() > 10**8


def test_error_feedback_state_counts_clients_that_trained():
    from fedsim.scenario import validate_doc

    doc = {
        "data": {"dataset": "synthetic"},
        "rounds": 3,
        "clients": {"count": 1000, "per_round": 10},
        "codec": {"uplink": "ef(topk:0.01)"},
    }
    _, parts = memory.estimate(validate_doc(doc))
    _, none = memory.estimate(validate_doc({**doc, "codec": {"uplink": "topk:0.01"}}))
    _, disk = memory.estimate(validate_doc({**doc, "runtime": {"state_store": "disk"}}))
    assert parts["clients.count"] == 30 * parts["clients.per_round"] // 10
    assert none["clients.count"] == 0 and disk["clients.count"] == 0


def test_base_scenario_is_valid(tmp_path):
    """The corpus's base scenario itself is fine, so each case fails for its own reason."""
    (tmp_path / "ok.toml").write_text(BASE)
    assert main(["validate", str(tmp_path / "ok.toml")]) == 0
