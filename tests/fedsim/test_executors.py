"""The executors package: one worker-pool state machine, one result validation, submit().

Unit tests drive `WorkerPool` with a fake transport; end-to-end tests inject a negative
quantizer step into one result (FEDSIM_FAULT="negstep:I:N") and check that the run logs it,
re-runs the task and ends exactly as the clean run does, in process and with 2 ipc workers.
"""

import asyncio

import msgpack
import numpy as np
import pytest
import tomllib
from fedsim.codecs.pipeline import encode_tensors, parse_codec
from fedsim.codecs.wire import WireError, pack_message
from test_workers import SHORT, events, fedsim_run, same_run

from fedsim.errors import RuntimeFailure
from fedsim.runtime import protocol as P
from fedsim.runtime.executors.actor import negate_quantizer_step
from fedsim.runtime.executors.base import WorkerPool, validate_result

Q4 = ("--set", 'codec.uplink="q4"')


# ---- result validation ----------------------------------------------------------------------


def task(tid: int = 0, rnd: int = 1, client: int = 3) -> P.Task:
    return P.Task(tid, rnd, client, [], [], {})


def answer(t: P.Task, codec: str = "q4", values=None, **meta) -> list:
    x = np.linspace(-1, 1, 64, dtype=np.float32) if values is None else values
    records, _ = encode_tensors({"w": x}, parse_codec(codec), np.random.default_rng(0))
    m = {"round": t.round, "client": t.client_id, "num_samples": 10, "train_loss": 0.5}
    m.update(meta)
    update = pack_message("update", {k: v for k, v in m.items() if v is not None}, records)
    return P.result_frames(P.TaskResult(t.task_id, t.round, t.client_id, update, [], {}))


def test_valid_result_is_accepted():
    res = validate_result(task(), answer(task()))
    assert (res.task_id, res.round, res.client_id) == (0, 1, 3)


def test_negative_quantizer_step_is_rejected():
    bad = negate_quantizer_step(answer(task()))
    with pytest.raises(WireError):
        validate_result(task(), bad)


def test_huge_finite_scales_that_decode_to_inf_are_rejected():
    frames = answer(task())
    at = 1 + msgpack.unpackb(bytes(frames[1]))["tensors"][0]["buffers"][1]["frame"]
    frames[at] = np.array([3e38, 3e38], np.float32).tobytes()
    with pytest.raises(WireError):  # the strict decoder (or the finiteness check) refuses it
        validate_result(task(), frames)


@pytest.mark.parametrize(
    "bad",
    [
        {"num_samples": None},
        {"num_samples": True},
        {"num_samples": "10"},
        {"train_loss": None},
        {"train_loss": "0.5"},
    ],
)
def test_result_without_a_clean_update_is_rejected(bad):
    with pytest.raises(WireError):
        validate_result(task(), answer(task(), **bad))


def test_a_diverged_client_is_a_result_not_a_corrupt_message():
    # fp32 carries the client's real numbers: NaN from a diverging client is the experiment's
    # outcome (the run ends with status "diverged"), never re-run as machinery failure
    res = validate_result(
        task(), answer(task(), values=np.array([1.0, np.nan], np.float32), codec="fp32")
    )
    assert res.client_id == 3


def test_result_for_another_task_is_rejected():
    with pytest.raises(WireError):
        validate_result(task(tid=1), answer(task(tid=0)))
    with pytest.raises(WireError):
        validate_result(task(client=4), answer(task(client=3)))


# ---- envelopes ----------------------------------------------------------------------------


def test_envelope_rejects_msgpack_extension_types():
    for ext in (msgpack.ExtType(5, b"x"), msgpack.Timestamp(1, 0)):
        frame = msgpack.packb({"v": P.PROTOCOL_VERSION, "type": "hello", "pid": ext})
        with pytest.raises(WireError):
            P.unpack_envelope(frame)


@pytest.mark.parametrize("pid", [True, "12", 1.5, None, -1])
def test_hello_fields_are_type_checked(pid):
    env = P.unpack_envelope(P.pack_envelope(P.HELLO, pid=pid, host="h"))
    with pytest.raises(WireError):
        P.parse_hello(env)
    assert P.parse_hello(P.unpack_envelope(P.pack_envelope(P.HELLO, pid=7, host="h"))) == (7, "h")
    with pytest.raises(WireError):
        P.parse_hello(P.unpack_envelope(P.pack_envelope(P.HELLO, pid=7, host=3)))


# ---- the worker pool ------------------------------------------------------------------------


class FakeTransport:
    def __init__(self):
        self.sent: list[tuple[str, int]] = []
        self.events: list[tuple[str, dict]] = []
        self.pool = WorkerPool(self.send, self.event)

    def send(self, worker, t):
        self.sent.append((worker.key, t.task_id))

    def event(self, kind, **fields):
        self.events.append((kind, fields))

    def kinds(self):
        return [k for k, _ in self.events]

    def with_workers(self, *keys):
        for k in keys:
            self.pool.join(k, k)
            self.pool.ready(k)
        return self.pool


def pool_test(fn):
    def run():
        asyncio.run(fn(FakeTransport()))

    run.__name__ = fn.__name__
    return run


@pool_test
async def test_lost_worker_task_is_redispatched(tr):
    pool = tr.with_workers("a", "b")
    t0, t1 = task(0, client=0), task(1, client=1)
    f0, f1 = pool.submit(t0), pool.submit(t1)
    assert not f0.done() and tr.sent == [("a", 0), ("b", 1)]
    pool.lose("a", "silent")
    assert (
        "worker_lost",
        {"worker": "a", "pid": None, "host": "", "reason": "silent"},
    ) in tr.events
    assert any(k == "redispatch" and f["reason"] == "worker_lost" for k, f in tr.events)
    pool.answer("b", answer(t1))
    assert f1.result().task_id == 1 and tr.sent[-1] == ("b", 0)
    pool.answer("b", answer(t0))
    assert f0.result().task_id == 0 and f0.result().meta["worker"] == "b"


@pool_test
async def test_corrupt_twice_stops_the_run(tr):
    pool = tr.with_workers("a")
    t0 = task(0)
    fut = pool.submit(t0)
    pool.answer("a", negate_quantizer_step(answer(t0)))
    assert tr.kinds() == ["worker_joined", "corrupt_message", "redispatch"]
    assert tr.sent == [("a", 0), ("a", 0)] and not fut.done()
    pool.answer("a", negate_quantizer_step(answer(t0)))
    with pytest.raises(RuntimeFailure, match="twice"):
        fut.result()
    with pytest.raises(RuntimeFailure):  # the run is over: later tasks fail at once
        pool.submit(task(1)).result()


@pool_test
async def test_corrupt_once_then_clean_is_accepted(tr):
    pool = tr.with_workers("a")
    t0 = task(0)
    fut = pool.submit(t0)
    pool.answer("a", [b"\x93garbage"])
    pool.answer("a", answer(t0))
    assert fut.result().task_id == 0


@pool_test
async def test_late_result_from_lost_worker_is_ignored(tr):
    pool = tr.with_workers("a", "b")
    t0 = task(0)
    fut = pool.submit(t0)
    pool.lose("a", "silent")
    assert tr.sent == [("a", 0), ("b", 0)]
    pool.answer("a", answer(t0))
    assert tr.kinds()[-1] == "late_result" and not fut.done()
    pool.answer("b", answer(t0))
    assert fut.result().meta["worker"] == "b"


@pool_test
async def test_error_answer_stops_the_run(tr):
    pool = tr.pool
    pool.join("a", "a", pid=5)
    pool.ready("a")
    fut = pool.submit(task(0))
    pool.answer("a", [P.pack_envelope(P.ERROR, task=0, message="ValueError: boom")])
    with pytest.raises(RuntimeFailure, match="boom"):
        fut.result()


@pool_test
async def test_credit_and_starvation(tr):
    pool = WorkerPool(tr.send, tr.event, credit=2)
    futs = [pool.submit(task(i)) for i in range(5)]
    assert pool.starved(0.0, 10.0) is False and pool.starved(11.0, 10.0) is True
    pool.join("a", "a")
    assert not pool.starved(12.0, 10.0)
    pool.ready("a")
    assert tr.sent == [("a", 0), ("a", 1)]  # two calls queued on one worker, no more
    futs[3].cancel()  # abandoned while waiting: never sent
    pool.answer("a", answer(task(0)))
    pool.answer("a", answer(task(1)))
    pool.answer("a", answer(task(2)))
    assert [t for _, t in tr.sent] == [0, 1, 2, 4]


# ---- end to end ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def q4_reference(tmp_path_factory):
    return fedsim_run(tmp_path_factory.mktemp("q4ref"), "inproc", *Q4)


def assert_negstep_rerun(ref, out):
    same_run(ref, out)
    ev = events(out)
    corrupt = [e for e in ev if e["event"] == "corrupt_message"]
    assert len(corrupt) == 1 and "negative" in corrupt[0]["error"]
    assert any(e["event"] == "redispatch" and e["reason"] == "corrupt_message" for e in ev)


def test_negative_step_in_process_is_rerun(q4_reference, tmp_path):
    out = fedsim_run(tmp_path, "neg", *Q4, env={"FEDSIM_FAULT": "negstep:0:2"})
    assert_negstep_rerun(q4_reference, out)


@pytest.mark.multiprocess
def test_negative_step_from_a_worker_is_rerun(q4_reference, tmp_path):
    out = fedsim_run(
        tmp_path,
        "neg",
        *Q4,
        "--transport",
        "ipc",
        "--workers",
        "2",
        env={"FEDSIM_FAULT": "negstep:1:1"},
    )
    assert_negstep_rerun(q4_reference, out)


@pytest.mark.multiprocess
def test_submit_keeps_two_workers_busy():
    from fedsim.runtime.client import ClientRunner
    from fedsim.runtime.executors.zmq import ZmqWorkerExecutor
    from fedsim.scenario import dump_scenario, validate_doc

    doc = tomllib.loads(SHORT)
    doc["runtime"].update(transport="ipc", workers=2)
    sc = validate_doc(doc)
    model = ClientRunner(sc).model
    records, _ = encode_tensors(
        {k: v.detach().numpy() for k, v in model.state_dict().items()},
        parse_codec("fp32"),
        np.random.default_rng(0),
    )
    payload = pack_message("model", {"round": 1, "config": {}, "uplink": "fp32"}, records)
    tasks = [P.Task(i, 1, i, payload, [], {}) for i in range(6)]

    async def main():
        ex = ZmqWorkerExecutor(sc, dump_scenario(sc))
        await ex.start()
        try:
            futs = [ex.submit(t) for t in tasks]
            assert not any(f.done() for f in futs)  # submit returns at once
            return await asyncio.gather(*futs)
        finally:
            await ex.close()

    results = asyncio.run(asyncio.wait_for(main(), timeout=240))
    assert [r.task_id for r in results] == list(range(6))
    assert len({r.meta["worker_pid"] for r in results}) == 2
