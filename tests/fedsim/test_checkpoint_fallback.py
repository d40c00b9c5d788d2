"""`--resume` falls back to the newest checkpoint that verifies (issue 17)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedsim.errors import FedsimError
from fedsim.runtime import checkpoint as ckpt

HASH = "a" * 64


def _save(d: Path, rnd: int, scen_hash: str = HASH) -> Path:
    state = ckpt.RunState(round=rnd, sim_time=10.0 * rnd, offsets={"metrics.jsonl": 10 * rnd})
    glob = {"w": np.full((3, 2), rnd, np.float32)}
    clients = {0: {"residual": np.arange(4, dtype=np.float32) * rnd}}
    return ckpt.save(d, state, glob, clients, {}, scen_hash)


def test_damaged_newest_falls_back_to_the_older_one(tmp_path):
    d = tmp_path / "checkpoints"
    older, newest = _save(d, 1), _save(d, 2)
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])  # a torn write
    skipped = []
    path, (state, glob, clients, _) = ckpt.latest_valid(
        d, HASH, lambda p, r: skipped.append((p, r))
    )
    assert path == older and state.round == 1
    assert np.array_equal(glob["w"], np.full((3, 2), 1, np.float32))
    assert np.array_equal(clients[0]["residual"], np.arange(4, dtype=np.float32))
    assert [p for p, _ in skipped] == [newest] and "unreadable" in skipped[0][1]


def test_newest_good_checkpoint_wins(tmp_path):
    d = tmp_path / "checkpoints"
    _save(d, 1)
    newest = _save(d, 2)
    path, loaded = ckpt.latest_valid(d, HASH)
    assert path == newest and loaded[0].round == 2


def test_garbage_and_renamed_checkpoints_are_skipped(tmp_path):
    d = tmp_path / "checkpoints"
    good = _save(d, 1)
    (d / "round-000003.ckpt").write_bytes(b"\x00" * 64)  # not a message at all
    (d / "round-000002.ckpt").write_bytes(good.read_bytes())  # round 1 under another name
    skipped = []
    path, loaded = ckpt.latest_valid(d, HASH, lambda p, r: skipped.append(p.name))
    assert path == good and loaded[0].round == 1
    assert skipped == ["round-000003.ckpt", "round-000002.ckpt"]


def test_no_checkpoint_is_none_and_none_valid_is_an_error(tmp_path):
    assert ckpt.latest_valid(tmp_path / "missing", HASH) is None
    d = tmp_path / "checkpoints"
    d.mkdir()
    assert ckpt.latest_valid(d, HASH) is None
    (d / "round-000001.ckpt").write_bytes(b"junk")
    with pytest.raises(FedsimError, match="no checkpoint verifies"):
        ckpt.latest_valid(d, HASH)


def test_another_scenarios_checkpoint_is_an_error_not_a_fallback(tmp_path):
    d = tmp_path / "checkpoints"
    _save(d, 1)
    _save(d, 2, scen_hash="b" * 64)
    with pytest.raises(FedsimError, match="different scenario"):
        ckpt.latest_valid(d, HASH)


def test_damaged_client_states_fall_back_to_the_older_checkpoint(tmp_path):
    d = tmp_path / "checkpoints"
    older, newest = _save(d, 1), _save(d, 2)
    side = newest.with_suffix(".clients")
    data = bytearray(side.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in a residual
    side.write_bytes(bytes(data))
    skipped = []
    path, (state, _, clients, _) = ckpt.latest_valid(d, HASH, lambda p, r: skipped.append(r))
    assert path == older and state.round == 1
    assert np.array_equal(clients[0]["residual"], np.arange(4, dtype=np.float32))
    assert len(skipped) == 1 and "SHA-256" in skipped[0]


def test_old_checkpoints_take_their_client_files_with_them(tmp_path):
    d = tmp_path / "checkpoints"
    for r in (1, 2, 3):
        _save(d, r)
    (d / "round-000009.clients").write_bytes(b"torn")  # a save that died before its .ckpt
    _save(d, 4)
    assert sorted(p.name for p in d.iterdir()) == [
        "round-000003.ckpt",
        "round-000003.clients",
        "round-000004.ckpt",
        "round-000004.clients",
    ]


def test_a_checkpoint_with_client_states_inside_still_loads(tmp_path):
    # checkpoints written before client states moved to the .clients file kept them as
    # "client/<id>/<key>" tensors in the checkpoint itself, with no "clients" entry
    from fedsim.codecs.wire import from_blob, pack_message, to_blob, unpack_message

    d = tmp_path / "checkpoints"
    path = _save(d, 3)
    msg = unpack_message(from_blob(path.read_bytes()))
    meta = {k: v for k, v in msg.meta.items() if k != "clients"}
    records = [ckpt._rec(r.name, np.asarray(r.buffers[0]).reshape(r.shape)) for r in msg.tensors]
    records = [r for r in records if r.name != "index/clients"]
    records.append(ckpt._rec("client/0/residual", np.arange(4, dtype=np.float32) * 3))
    records.append(ckpt._rec("client/7/residual", np.ones(2, np.float32)))
    path.write_bytes(to_blob(pack_message("checkpoint", meta, records)))
    path.with_suffix(".clients").unlink()
    state, glob, clients, extra = ckpt.load(path, HASH)
    assert state.round == 3 and extra == {}
    assert np.array_equal(glob["w"], np.full((3, 2), 3, np.float32))
    assert sorted(clients) == [0, 7]
    assert np.array_equal(clients[0]["residual"], np.arange(4, dtype=np.float32) * 3)
    assert np.array_equal(clients[7]["residual"], np.ones(2, np.float32))
