"""Fuzzing unpack_message + decode_tensors: random, truncated, bit-flipped and
field-mutated messages. Only WireError may come out, nothing hangs, and no decode
allocates beyond the size cap."""

import time
import tracemalloc

import msgpack
import numpy as np
from fedsim.codecs import WireError, decode_tensors, pack_message, parse_codec, unpack_message

CAP = 1 << 22  # decoded bytes allowed per message in this test
SPECS = [
    "fp32",
    "fp16",
    "bf16",
    "q1",
    "q3",
    "q4",
    "q8:per=channel",
    "q12:bucket=5",
    "qsgd:s=5",
    "qsgd:s=16:bucket=8",
    "sign",
    "sign:bucket=4",
    "topk:0.2",
    "topk:0.1:mask=bitmap+q4",
    "randk:0.3:mask=index+fp16",
    "topk:0.2:mask=golomb+qsgd:s=3",
    "topk:5+sign",
]


def _corpus(rng):
    corpus = []
    for spec in SPECS:
        codec = parse_codec(spec)
        for shape in [(0,), (1,), (5,), (4, 6), (3, 2, 5), (300,)]:
            x = rng.standard_normal(shape).astype(np.float32)
            rec, _ = codec.encode("layer.weight", x, rng)
            corpus.append([bytes(f) for f in pack_message("update", {"round": 1}, [rec])])
    return corpus


def _random_value(rng):
    choices = [
        lambda: int(rng.integers(-(2**40), 2**40)),
        lambda: int(rng.integers(-3, 300)),
        lambda: 2**64 - 1,
        lambda: -1,
        lambda: float(rng.standard_normal()),
        lambda: "x" * int(rng.integers(0, 5)),
        lambda: ["uint8", "float32", "object", "golomb", "bitmap", "index", "q4"][
            int(rng.integers(7))
        ],
        lambda: None,
        lambda: True,
        lambda: [int(rng.integers(0, 1 << 20))],
        lambda: {"a": 1},
        lambda: b"\x00\x01",
    ]
    return choices[int(rng.integers(len(choices)))]()


def _mutate_header(header, rng):
    """Replace one randomly chosen field anywhere in the header with a random value."""
    paths = []

    def walk(node, path):
        if isinstance(node, dict):
            for k, v in node.items():
                paths.append((*path, k))
                walk(v, (*path, k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                paths.append((*path, i))
                walk(v, (*path, i))

    walk(header, ())
    if not paths:
        return header
    path = paths[int(rng.integers(len(paths)))]
    node = header
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = _random_value(rng)
    return header


def _mutate(frames, rng):
    frames = list(frames)
    kind = int(rng.integers(7))
    i = int(rng.integers(len(frames)))
    if kind == 0:  # flip bits
        buf = bytearray(frames[i])
        for _ in range(int(rng.integers(1, 4))):
            if buf:
                j = int(rng.integers(len(buf)))
                buf[j] ^= 1 << int(rng.integers(8))
        frames[i] = bytes(buf)
    elif kind == 1:  # truncate
        frames[i] = frames[i][: int(rng.integers(len(frames[i]) + 1))]
    elif kind == 2:  # random bytes
        frames[i] = rng.bytes(int(rng.integers(0, 64)))
    elif kind == 3:  # drop or duplicate a frame
        if rng.integers(2) and len(frames) > 1:
            del frames[i]
        else:
            frames.insert(i, frames[i])
    elif kind == 4:  # mutate a header field
        try:
            header = msgpack.unpackb(frames[0])
        except Exception:  # an earlier mutation broke the header already
            return frames
        frames[0] = msgpack.packb(_mutate_header(header, rng))
    elif kind == 5:  # random payload of the right length
        if i > 0:
            frames[i] = rng.bytes(len(frames[i]))
    else:  # extend a frame
        frames[i] = frames[i] + rng.bytes(int(rng.integers(1, 9)))
    return frames


def test_fuzz_only_wire_error():
    rng = np.random.default_rng(2024)
    corpus = _corpus(rng)
    start = time.perf_counter()
    ok = rejected = 0
    slowest = 0.0
    tracemalloc.start()
    try:
        for it in range(10_000):
            frames = _mutate(corpus[int(rng.integers(len(corpus)))], rng)
            if it % 3 == 0:
                frames = _mutate(frames, rng)
            if it == 2000:  # measure allocations on the first 2000, then run at full speed
                _, peak = tracemalloc.get_traced_memory()
                assert peak < 8 * CAP, peak
                tracemalloc.stop()
            t0 = time.perf_counter()
            try:
                msg = unpack_message(frames, max_decoded_bytes=CAP)
                out = decode_tensors(msg.tensors)
                for rec in msg.tensors:
                    assert out[rec.name].shape == tuple(rec.shape)
                    assert out[rec.name].dtype == np.float32
                ok += 1
            except WireError:
                rejected += 1
            slowest = max(slowest, time.perf_counter() - t0)
    finally:
        if tracemalloc.is_tracing():
            tracemalloc.stop()
    assert ok + rejected == 10_000
    assert rejected > 3000 and ok > 500  # both paths exercised
    assert slowest < 1.0  # nothing hangs
    assert time.perf_counter() - start < 50


def test_random_garbage_frames():
    rng = np.random.default_rng(7)
    for _ in range(500):
        frames = [rng.bytes(int(rng.integers(0, 40))) for _ in range(int(rng.integers(1, 4)))]
        try:
            decode_tensors(unpack_message(frames, max_decoded_bytes=CAP).tensors)
        except WireError:
            pass
