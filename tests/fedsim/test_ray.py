"""The Ray executor: a shortened quickstart on a local Ray instance (2 CPUs) gets the
in-process model hash, metrics and traffic; an actor killed mid-round changes nothing; no
Ray process is left afterwards.

Each Ray run happens in a child process (the Ray driver), so the test process itself never
joins a Ray cluster; the child checks that the executor shut its Ray instance down before
it exits, and the test checks again afterwards."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_workers import SHORT, events, fedsim_run, same_run

ray = pytest.importorskip("ray", reason='Ray not installed (pip install "fedsim[ray]")')

pytestmark = [pytest.mark.slow, pytest.mark.multiprocess]

HELPERS = textwrap.dedent(
    '''
    import os, time

    def ray_pids(wait=0.0):
        """Pids of Ray's processes on this machine (gcs_server, raylet, ray:: workers, agents)."""
        deadline = time.monotonic() + wait
        while True:
            found = set()
            for d in os.listdir("/proc"):
                if not d.isdigit() or int(d) == os.getpid():
                    continue
                try:
                    with open(f"/proc/{d}/cmdline", "rb") as f:
                        cmd = f.read().replace(b"\\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                if cmd.startswith("ray::") or "/site-packages/ray/" in cmd:
                    found.add(int(d))
            if not found or time.monotonic() >= deadline:
                return found
            time.sleep(0.5)
    '''
)


# Drives the Coordinator with a RayExecutor in a child process. Once the scenario schema has
# `runtime.executor`, `fedsim run --executor ray` does the same through make_executor.
DRIVER = textwrap.dedent(
    """
    import json, sys
    from fedsim.runtime import coordinator
    from fedsim.runtime.executors.ray import RayExecutor
    from fedsim.scenario import load_scenario

    actors = int(sys.argv[3])
    before = ray_pids()

    def make(sc, runner_factory, *, scenario_toml, on_event):
        return RayExecutor(sc, scenario_toml, on_event=on_event, actors=actors)

    coordinator.make_executor = make
    coordinator.Coordinator(load_scenario(sys.argv[1]), sys.argv[2]).run()
    import ray
    print(json.dumps({"initialized": ray.is_initialized(), "left": sorted(ray_pids(wait=20) - before)}))
    """
)

DRIVER = HELPERS + DRIVER
_ns: dict = {}
exec(HELPERS, _ns)
ray_pids = _ns["ray_pids"]


def ray_run(
    tmp: Path, name: str, *, actors: int = 2, env=None, timeout=420, text: str = SHORT
) -> Path:
    scen = tmp / "short.toml"
    scen.write_text(text)
    out = tmp / name
    before = ray_pids()
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, str(scen), str(out), str(actors)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == {"initialized": False, "left": []}, report
    left = ray_pids(wait=20) - before
    assert not left, f"Ray processes left after the run: {sorted(left)}"
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return fedsim_run(tmp_path_factory.mktemp("ref"), "inproc")


def test_ray_matches_inproc(reference, tmp_path):
    out = ray_run(tmp_path, "ray")
    same_run(reference, out)
    ev = events(out)
    cluster = [e for e in ev if e["event"] == "ray_cluster"]
    assert len(cluster) == 1 and cluster[0]["cpus"] == 2.0 and cluster[0]["actors"] == 2
    assert any(e["event"] == "worker_joined" and e.get("executor") == "ray" for e in ev)
    assert not any(e["event"] in ("worker_lost", "redispatch") for e in ev)


def test_killed_actor_is_rerun_without_changing_the_result(reference, tmp_path):
    # one actor, SIGKILLed on its 2nd task before answering: a real mid-round loss; the
    # executor starts a replacement and re-runs the task from the same inputs
    out = ray_run(tmp_path, "killed", actors=1, env={"FEDSIM_FAULT": "kill:0:2"})
    same_run(reference, out)
    ev = events(out)
    lost = [e for e in ev if e["event"] == "worker_lost"]
    assert len(lost) == 1 and lost[0]["worker"] == "ray-actor-0"
    assert any(e["event"] == "redispatch" and e["reason"] == "worker_lost" for e in ev)
    assert [e["index"] for e in ev if e["event"] == "worker_spawned"] == [0, 1]


def _cli_has_executor() -> bool:
    from fedsim.scenario.schema import RuntimeCfg

    return "executor" in RuntimeCfg.model_fields


@pytest.mark.skipif(not _cli_has_executor(), reason="runtime.executor not in the schema yet")
def test_cli_executor_ray(reference, tmp_path):
    before = ray_pids()
    out = fedsim_run(tmp_path, "cli", "--executor", "ray", "--workers", "2", timeout=420)
    same_run(reference, out)
    assert any(e["event"] == "ray_cluster" for e in events(out))
    assert not ray_pids(wait=20) - before


def test_corrupt_answer_is_validated_and_rerun(reference, tmp_path):
    # actor 0 answers its 1st task with a malformed update: fedsim's validation (the same
    # unpack_message as for ZeroMQ workers) rejects it and the task is re-run once
    out = ray_run(tmp_path, "corrupt", actors=1, env={"FEDSIM_FAULT": "corrupt:0:1"})
    same_run(reference, out)
    ev = events(out)
    assert any(e["event"] == "corrupt_message" for e in ev)
    assert any(e["event"] == "redispatch" and e["reason"] == "corrupt_message" for e in ev)
    assert not any(e["event"] == "worker_lost" for e in ev)


def test_negative_quantizer_step_is_rerun(tmp_path):
    # actor 0 flips the sign of one q4 step in its 1st answer: it parses but does not
    # decode; the same validation as in process rejects it and the task is re-run
    q4 = SHORT.replace("[runtime]", '[codec]\nuplink = "q4"\n[runtime]')
    ref = fedsim_run(tmp_path, "ref", text=q4)
    out = ray_run(tmp_path, "negstep", actors=1, env={"FEDSIM_FAULT": "negstep:0:1"}, text=q4)
    same_run(ref, out)
    ev = events(out)
    assert [e["event"] for e in ev].count("corrupt_message") == 1
    assert any(e["event"] == "redispatch" and e["reason"] == "corrupt_message" for e in ev)
