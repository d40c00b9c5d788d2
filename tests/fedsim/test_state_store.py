"""The per-client state store: in memory and on disk give the same state and the same run."""

import json

import numpy as np
import pytest
from fedsim.codecs.wire import WireError

from fedsim.runtime import coordinator as coord_mod
from fedsim.runtime.protocol import pack_state
from fedsim.runtime.state import ClientStateStore
from fedsim.scenario import validate_doc


def _state(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "codec/conv.weight#residual": rng.standard_normal((4, 3, 5, 5), dtype=np.float32),
        "codec/fc.bias#residual": rng.standard_normal(7, dtype=np.float32),
        "algo/control": np.arange(6, dtype=np.float64).reshape(2, 3),
    }


def _same(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
        np.testing.assert_array_equal(a[k], b[k])


@pytest.fixture(params=["memory", "disk", "directory", "spill"])
def store(request, tmp_path):
    if request.param == "memory":
        s = ClientStateStore()
    elif request.param == "disk":
        s = ClientStateStore(disk=True)
    elif request.param == "spill":  # room for about one client's state in memory
        s = ClientStateStore(disk=True, memory_bytes=3000)
    else:
        s = ClientStateStore(tmp_path / "state")
    yield s
    s.close()


def test_get_commit_clients(store):
    assert store.get(3) == {} and store.clients() == []
    store.commit(3, pack_state(_state(0)))
    store.commit(1, pack_state(_state(1)))
    _same(store.get(3), _state(0))
    _same(store.get(1), _state(1))
    assert store.clients() == [1, 3]
    store.commit(3, pack_state(_state(2)))  # replaces
    _same(store.get(3), _state(2))
    store.commit(3, [])  # no new state: the old one stays
    _same(store.get(3), _state(2))
    expected = sum(a.nbytes for a in _state(1).values()) + sum(a.nbytes for a in _state(2).values())
    assert store.nbytes() >= expected


def test_restore_from_arrays(store):
    store.restore(4, _state(3))
    store.restore(5, {})
    _same(store.get(4), _state(3))
    assert store.clients() == [4]


def test_commit_accepts_zmq_style_memoryviews(store):
    frames = [memoryview(bytes(f)) for f in pack_state(_state(5))]
    store.commit(0, frames)
    _same(store.get(0), _state(5))


def test_corrupt_state_is_rejected_and_keeps_the_old(store):
    store.commit(2, pack_state(_state(0)))
    frames = pack_state(_state(1))
    with pytest.raises(WireError):
        store.commit(2, [frames[0], b"\x00" * 3, *frames[2:]])
    _same(store.get(2), _state(0))


def test_disk_store_files_and_close(tmp_path):
    d = tmp_path / "s"
    s = ClientStateStore(d)
    assert s.on_disk and s.directory == d
    s.commit(7, pack_state(_state(0)))
    assert sorted(p.name for p in d.iterdir()) == ["client-00000007.state"]
    s.close()
    assert list(d.iterdir()) == [] and s.clients() == []

    t = ClientStateStore(disk=True)
    t.commit(1, pack_state(_state(0)))
    folder = t.directory
    assert folder.exists()
    t.close()
    assert not folder.exists()

    k = ClientStateStore(d, keep=True)
    k.commit(1, pack_state(_state(0)))
    k.close()
    assert [p.name for p in d.iterdir()] == ["client-00000001.state"]


def test_memory_store_is_not_on_disk():
    s = ClientStateStore()
    assert not s.on_disk and s.directory is None


EF_RUN = {
    "name": "ef-store",
    "seed": 1,
    "rounds": 3,
    "data": {
        "dataset": "synthetic",
        "synthetic": {"shape": [1, 8, 8], "train_size": 240, "test_size": 60},
    },
    "model": {"name": "cnn", "args": {"channels": [4, 8], "hidden": 16}},
    "clients": {"count": 12, "per_round": 6},
    "train": {"local_steps": 2, "batch_size": 8},
    "codec": {"uplink": "ef(topk:0.05)"},
    "eval": {"every": 3},
}


def _run(tmp_path, name, **runtime):
    """A run through the scenario keys (runtime.state_store / state_dir); the client store the
    engine's Server made first is captured, its close() made a no-op to compare it after."""
    import copy

    import fedsim.runtime.server as server_mod

    doc = copy.deepcopy(EF_RUN)
    doc.setdefault("runtime", {}).update(runtime)
    made = []
    real = server_mod.ClientStateStore

    def make(*args, **kwargs):
        store = real(*args, **kwargs)
        store.release = store.close
        store.close = lambda: None  # keep its contents for the comparison below
        made.append(store)
        return store

    server_mod.ClientStateStore = make
    try:
        summary = coord_mod.Coordinator(validate_doc(doc), tmp_path / name).run()
    finally:
        server_mod.ClientStateStore = real
    return summary, made[0], (tmp_path / name / "metrics.jsonl").read_text()


def _strip_wall(text: str) -> list[dict]:
    rows = [json.loads(line) for line in text.splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith("wall_")} for r in rows]


def test_disk_store_gives_the_same_run(tmp_path, monkeypatch):
    mem, mem_store, mem_metrics = _run(tmp_path, "mem")
    disk, disk_store, disk_metrics = _run(
        tmp_path, "disk", state_store="disk", state_dir=str(tmp_path / "state")
    )
    assert any((tmp_path / "state").iterdir())  # the committed states really were on disk
    assert mem_store.clients() and mem_store.clients() == disk_store.clients()
    for c in mem_store.clients():
        _same(mem_store.get(c), disk_store.get(c))
    assert mem["model_sha256"] == disk["model_sha256"]
    assert _strip_wall(mem_metrics) == _strip_wall(disk_metrics)
    disk_store.release()
    mem_store.release()


def test_spill_store_keeps_the_recent_in_memory_and_the_rest_on_disk(tmp_path):
    one = sum(a.nbytes for a in _state(0).values())
    s = ClientStateStore(tmp_path / "s", memory_bytes=2 * one)
    for c in range(5):
        s.commit(c, pack_state(_state(c)))
    assert s.spilled == 3  # clients 0, 1, 2 went to disk, 3 and 4 are in memory
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [
        f"client-{c:08d}.state" for c in range(3)
    ]
    _same(s.get(0), _state(0))  # from its file
    s.commit(0, pack_state(_state(9)))  # newer state in memory: it wins over the file
    assert s.spilled == 4  # ... and pushed out client 3, the least recently used
    _same(s.get(0), _state(9))
    for c in range(1, 5):
        _same(s.get(c), _state(c))
    assert s.clients() == [0, 1, 2, 3, 4]
    s.close()
    assert not any((tmp_path / "s").iterdir()) and s.clients() == []


def _checkpointed(tmp_path, name, rounds_kept, **runtime):
    """A run with a checkpoint after every round; then, when `rounds_kept` is set, as if it
    had crashed after that round's checkpoint, resumed to the end."""
    import copy

    doc = copy.deepcopy(EF_RUN)
    doc["codec"]["downlink"] = "ef(topk:0.2)"  # per-client references are checkpointed too
    doc["runtime"] = {"checkpoint_every": 1, **runtime}
    sc = validate_doc(doc)
    out = tmp_path / name
    summary = coord_mod.Coordinator(sc, out).run()
    if rounds_kept is None:
        return summary, out
    ckpts = out / "checkpoints"
    for p in ckpts.iterdir():  # everything written after round `rounds_kept`'s checkpoint
        if int(p.name[len("round-") : len("round-") + 6]) > rounds_kept:
            p.unlink()
    (out / "summary.json").unlink()
    return coord_mod.Coordinator(sc, out, resume=True).run(), out


def test_resume_from_spilled_state_equals_the_uninterrupted_run(tmp_path):
    whole, a = _checkpointed(tmp_path, "whole", None)
    resumed, b = _checkpointed(tmp_path, "resumed", 2, state_store="spill", state_memory="20kB")
    assert resumed["resumed"] and resumed["model_sha256"] == whole["model_sha256"]
    assert _strip_wall((a / "metrics.jsonl").read_text()) == _strip_wall(
        (b / "metrics.jsonl").read_text()
    )
    assert _strip_wall((a / "traffic.jsonl").read_text()) == _strip_wall(
        (b / "traffic.jsonl").read_text()
    )
    # the client states are beside the checkpoint, not inside it
    names = sorted(p.name for p in (b / "checkpoints").iterdir())
    assert names == [f"round-00000{r}.{ext}" for r in (2, 3) for ext in ("ckpt", "clients")]
    assert '"event":"resume"' in (b / "events.jsonl").read_text().replace(" ", "")


@pytest.mark.slow
@pytest.mark.multiprocess
def test_spilled_state_with_ipc_workers_gives_the_in_process_run(tmp_path):
    # client state travels with each task, so a worker process never holds any: the
    # spilling store behind 2 workers gives the in-memory, in-process run exactly
    mem, mem_store, mem_metrics = _run(tmp_path, "mem")
    spill, spill_store, spill_metrics = _run(
        tmp_path, "spill", state_store="spill", state_memory="20kB", transport="ipc", workers=2
    )
    assert spill_store.spilled > 0  # the budget really pushed states to disk
    assert mem["model_sha256"] == spill["model_sha256"]
    assert _strip_wall(mem_metrics) == _strip_wall(spill_metrics)
    mem_store.release()
    spill_store.release()
