"""Structure-aware fuzzing of unpack_message + decode_tensors (issue 17, "the decoder is
strict").

Valid messages of every codec family are mutated where the format has structure: header
fields, tensor descriptors, shapes, params, buffer descriptors, scales, indices, codes and
whole frames. Frame-length mutations keep the descriptors' `nbytes` in step, so most
mutations get past the framing checks and reach the codecs' own validation. For every case
either `WireError` comes out, or the decode succeeds and its output is what a valid
message gives (the declared shapes, float32, finite unless a float codec carried the
values). Peak traced memory of each decode stays under 100 MB with a 16 MiB decoded-size
cap (the cap is what bounds a small sparse message that declares a large tensor); it is
measured on every third batch of 1,000 cases, as tracemalloc slows decoding about 8x.

A failure names the case number and the mutations applied; the sequence is deterministic
(one seed), so rerunning the test reproduces it.
"""

from __future__ import annotations

import time
import tracemalloc

import msgpack
import numpy as np
import pytest
from fedsim.codecs import (
    WireError,
    decode_tensors,
    encode_tensors,
    from_blob,
    pack_message,
    parse_codec,
    to_blob,
    unpack_message,
)
from fedsim.codecs.bitpack import pack_codes, packed_nbytes, unpack_codes
from fedsim.codecs.masks import index_dtype

CASES = 30_000
SEED = 17
CAP = 1 << 24  # decoded bytes per message allowed in this test
PEAK_LIMIT = 100 * 2**20  # bytes traced during one decode
BATCH = 1000  # cases are built untraced, then decoded
TRACE_EVERY = 3  # every third batch decodes under tracemalloc (it slows decoding ~8x)
F32 = np.finfo(np.float32)

SPECS = [
    "fp32",
    "fp16",
    "bf16",
    "q1",
    "q3",
    "q4",
    "q8",
    "q16",
    "q4:stochastic",
    "q8:stochastic",
    "q2:per=channel",
    "q8:per=channel",
    "q5:bucket=4",
    "q12:bucket=7:stochastic",
    "qsgd",
    "qsgd:s=1",
    "qsgd:s=5",
    "qsgd:s=255:bucket=8",
    "sign",
    "sign:per=channel",
    "sign:bucket=3",
    "topk:0.2",
    "topk:0.2:mask=bitmap",
    "topk:0.3:mask=index",
    "topk:0.2:mask=golomb",
    "randk:0.3",
    "randk:0.25:mask=golomb+fp16",
    "topk:0.1+q8",
    "topk:0.3:mask=bitmap+q4:stochastic",
    "randk:0.3:mask=index+bf16",
    "topk:0.2:mask=golomb+qsgd:s=3",
    "topk:5+sign",
    "topk:1:mask=index+q2",
    "ef(q4)",
    "ef(sign)",
    "ef(qsgd:s=7)",
    "ef(topk:0.1+q8)",
    "ef(randk:0.2:mask=golomb)",
]
SHAPES = [(0,), (1,), (7,), (4, 6), (3, 2, 5), (2, 0), (130,), (20, 30)]
# few values of a large tensor: small messages whose valid decodes allocate megabytes
# (shape mutations double them; the decoded-size cap bounds them)
LARGE = [
    ("topk:5+sign", (1 << 20,)),
    ("topk:3:mask=index", (512, 1024)),
    ("randk:4:mask=golomb+q4", (1 << 19,)),
    ("topk:2:mask=bitmap+qsgd:s=3", (1 << 15,)),
]
FLOAT_CODECS = ("fp32", "fp16", "bf16")


def _tensor(rng, shape, kind):
    if kind == 0:
        return rng.standard_normal(shape).astype(np.float32)
    if kind == 1:  # constant: zero steps, zero norms
        return np.full(shape, 0.0 if rng.integers(2) else -2.5, np.float32)
    x = rng.standard_normal(shape).astype(np.float32)  # ties and a constant first channel
    x[x > 0.5] = 1.0
    if x.ndim >= 2 and x.shape[0]:
        x[0] = 0.25
    return x


def _corpus(rng):
    """(header bytes, frames) of valid messages; one to three tensors each."""
    corpus = []
    for spec in SPECS:
        codec = parse_codec(spec)
        for i, shape in enumerate(SHAPES):
            for kind in range(3):
                state = None
                tensors = {"layer.weight": _tensor(rng, shape, kind)}
                if (i + kind) % 3 == 0:
                    tensors["layer.bias"] = _tensor(rng, (shape[0] if shape else 1,), kind)
                if (i + kind) % 5 == 0:
                    tensors["scale"] = _tensor(rng, (), 0)
                # two rounds through ef(...) so that records come from a nonzero residual
                for _ in range(2 if spec.startswith("ef(") else 1):
                    records, state = encode_tensors(tensors, codec, rng, state)
                    state = state or None
                frames = [bytes(f) for f in pack_message("update", {"round": i}, records)]
                corpus.append((frames[0], frames[1:]))
    for spec, shape in LARGE:
        records, _ = encode_tensors({"emb": _tensor(rng, shape, 0)}, parse_codec(spec), rng)
        frames = [bytes(f) for f in pack_message("update", {}, records)]
        corpus.extend([(frames[0], frames[1:])] * 20)  # as likely as a small spec
    return corpus


# ---- values that look almost right --------------------------------------------------------

INT_LOOKALIKES = [True, False, 1.0, 0.0, -1, 2**63 - 1, 2**64 - 1, -(2**63), "1", None, [1]]
BAD_DIMS = [
    [2**63 - 1, 0],
    [0, 2**64 - 1],
    [2**62, 0, 4],
    [2**31, 0, 2**31],
    [-1],
    [3, -2],
    [True],
    [1.0],
    [2.0, 3],
    [[1]],
    "abc",
    {"a": 1},
    None,
    [1] * 33,
    [],
    [2**29],
    [2**22],
    [2**21],
    [1 << 40],
]
BAD_SCALES = [
    np.nan,
    np.inf,
    -np.inf,
    -1.0,
    -0.0,
    0.0,
    1e-40,
    -1e-40,
    float(F32.max),
    -float(F32.max),
    1e30,
    float(F32.tiny),
]
DTYPE_SWAPS = {
    "uint8": ["int8", "uint16", "float32", "object"],
    "int8": ["uint8"],
    "uint16": ["int16", "float16", "uint8", "uint32"],
    "int16": ["uint16"],
    "uint32": ["int32", "float32", "uint64"],
    "int32": ["uint32"],
    "uint64": ["int64", "float64", "uint32"],
    "int64": ["uint64"],
    "float16": ["uint16", "int16", "float32"],
    "float32": ["int32", "uint32", "float64", "float16", "<f4", "f4", 7],
    "float64": ["float32", "uint64"],
}
CODEC_SWAPS = [
    *SPECS[:12],
    "topk:0.2+q8",
    "Q4",
    "q4:per=tensor",
    "q17",
    "q0",
    "ef(q4)",
    "topk:1e-1",
    "topk:0.20",
    "qsgd:s=16",
    "sign:per=tensor",
    "",
    "x" * 1025,
    4,
    None,
]


def _canonical(spec):
    try:
        return parse_codec(spec).wire_spec == spec and not spec.startswith("ef(")
    except (ValueError, AttributeError):
        return False


CANONICAL = {c for c in CODEC_SWAPS if isinstance(c, str) and _canonical(c)}


def _pick(rng, seq):
    return seq[int(rng.integers(len(seq)))]


# ---- mutators: each takes (rng, header, frames) and changes them in place ---------------


def _descs(header):
    tensors = header.get("tensors") if isinstance(header, dict) else None
    if not isinstance(tensors, list):
        return []
    return [d for d in tensors if isinstance(d, dict)]


def _buffers(header):
    """(descriptor, buffer descriptor, frame index) of every well-formed buffer."""
    out = []
    for d in _descs(header):
        bufs = d.get("buffers")
        if isinstance(bufs, list):
            for b in bufs:
                if isinstance(b, dict) and type(b.get("frame")) is int:
                    out.append((d, b, b["frame"]))
    return out


def _numel(desc):
    shape = desc.get("shape")
    if isinstance(shape, list) and all(type(d) is int for d in shape):
        return int(np.prod(shape, dtype=object)) if shape else 1
    return None


def m_version(rng, header, frames):
    header["version"] = _pick(rng, [*INT_LOOKALIKES, 0, 2])
    return True  # only the int 1 is valid


def m_top_level(rng, header, frames):
    what = int(rng.integers(7))
    if what == 0:
        header["extra"] = 1
    elif what == 1:
        del header[_pick(rng, sorted(header))]
    elif what == 2:
        header["msg_type"] = _pick(rng, [1, None, b"update", ["update"]])
    elif what == 3:
        header["meta"] = _pick(rng, [[1], None, "meta", 3])
    elif what == 4:
        header["tensors"] = _pick(rng, [{}, None, "t", 1, [1], [[]], [{}]])
    elif what == 5:  # ext types anywhere: in meta, in params
        ext = _pick(rng, [msgpack.ExtType(5, b"xy"), msgpack.Timestamp(1, 2)])
        if rng.integers(2) or not _descs(header):
            header["meta"] = {"t": ext}
        else:
            _pick(rng, _descs(header))["params"] = {"k": ext}
    else:
        header["meta"] = {"round": 1, "nested": {"a": [1.5, None, "x", b"\x00"]}}
        return False  # valid
    return True


def m_name(rng, header, frames):
    descs = _descs(header)
    if descs:
        d = _pick(rng, descs)
        names = [x.get("name") for x in descs]
        d["name"] = _pick(rng, ["", "x" * 1025, 5, None, b"w", "é" * 10, *names])
        return d["name"] in ("", "x" * 1025, 5, None, b"w")
    return False


def m_codec(rng, header, frames):
    descs = _descs(header)
    if descs:
        codec = _pick(rng, CODEC_SWAPS)
        _pick(rng, descs)["codec"] = codec
        return codec not in CANONICAL
    return False


def m_shape(rng, header, frames):
    descs = _descs(header)
    if not descs:
        return
    d = _pick(rng, descs)
    shape = d.get("shape")
    dims = list(shape) if isinstance(shape, list) else []
    if not all(type(x) is int for x in dims):
        dims = []
    what = int(rng.integers(7))
    if what == 0 or not dims:
        d["shape"] = _pick(rng, BAD_DIMS)
        return d["shape"] not in ([], [2**22], [2**21])  # these can be valid
    elif what == 1:
        d["shape"] = dims[::-1]  # same n, another per-channel layout
    elif what == 2:
        d["shape"] = [1, *dims] if rng.integers(2) else [*dims, 1]
    elif what == 3:
        d["shape"] = dims[1:]
    elif what == 4:
        i = int(rng.integers(len(dims)))
        dims[i] = _pick(rng, [dims[i] + 1, dims[i] - 1, 2 * dims[i], 0, dims[i] + 2**32])
        d["shape"] = dims
    elif what == 5:
        i = int(rng.integers(len(dims)))
        dims[i] = _pick(rng, INT_LOOKALIKES)
        d["shape"] = dims
        return True  # not an int >= 0, or over the cap
    else:
        d["shape"] = [int(np.prod(dims))]


def _pick_desc(rng, header, key, kind):
    """A random descriptor whose `key` holds a `kind`, and that value; (None, None) if none."""
    descs = [d for d in _descs(header) if isinstance(d.get(key), kind)]
    if not descs:
        return None, None
    d = _pick(rng, descs)
    return d, d[key]


def m_params(rng, header, frames):
    d, params = _pick_desc(rng, header, "params", dict)
    if d is None:
        return False
    what = int(rng.integers(8))
    if what == 0:
        d["params"] = _pick(rng, [[], None, "p", 1, {"": 1}])
        return True
    if what == 1:
        key = _pick(rng, ["junk", "k", "mask", "rice", "values", "K"])
        params[key] = _pick(rng, [1, 5, "index", {}, {"a": 1}, None])
        return key in ("junk", "K")
    if what == 2 and params:
        del params[_pick(rng, sorted(params))]
        return True  # every key a sparse codec writes is required
    if what == 3 and type(params.get("k")) is int:
        k = params["k"]
        params["k"] = _pick(rng, [k + 1, k - 1, float(k), bool(k), str(k), 2**64 - 1, -1, 0])
        return not (type(params["k"]) is int and params["k"] == k)
    if what == 4:
        params["mask"] = _pick(rng, ["bitmap", "index", "golomb", "auto", "BITMAP", 1, None])
        return params["mask"] in ("auto", "BITMAP", 1, None)
    if what == 5:
        rice = params.get("rice", 0)
        rice = rice if type(rice) is int else 0
        params["rice"] = _pick(rng, [rice + 1, rice - 1, 0, 65, 2**63, True, float(rice), -1])
        bad = params["rice"] in (65, 2**63, -1) or type(params["rice"]) is not int
        return bad or params.get("mask") != "golomb"  # rice only comes with golomb
    if what == 6:
        params["values"] = _pick(rng, [{}, {"a": 1}, [], None, {"values": {}}])
        return True  # no value codec has params in wire version 1
    d["params"] = {}
    return False


def m_buffer_desc(rng, header, frames):
    d, bufs = _pick_desc(rng, header, "buffers", list)
    if d is None:
        return False
    what = int(rng.integers(6))
    if what == 0:
        d["buffers"] = _pick(rng, [None, {}, "b", [1], [[]]])
        return True
    if what == 1 and bufs:
        del bufs[int(rng.integers(len(bufs)))]
        return True  # a frame nobody describes
    if what == 2 and bufs:
        bufs.insert(int(rng.integers(len(bufs) + 1)), dict(_pick(rng, bufs)))
        return True  # frame numbers out of sequence
    if what == 3 and len(bufs) >= 2:
        i, j = rng.choice(len(bufs), 2, replace=False)
        bufs[i], bufs[j] = bufs[j], bufs[i]
        return True  # frame numbers out of sequence
    b = _pick(rng, bufs) if bufs else None
    if not isinstance(b, dict):
        return False
    key = _pick(rng, ["dtype", "frame", "nbytes", "extra"])
    if key == "dtype":
        b[key] = _pick(rng, DTYPE_SWAPS.get(b.get(key), ["uint8", "object"]))
        return True  # every codec names the exact dtype of each buffer
    if key == "extra":
        b[key] = 0
        return True
    v = b.get(key)
    v = v if type(v) is int else 0
    b[key] = _pick(rng, [v + 1, v - 1, float(v), v == 1, -v, 2**64 - 1])
    return not (type(b[key]) is int and b[key] == v)


def _set_frame(header, frames, fi, data):
    """Replace buffer frame fi (1-based) and keep its descriptor's nbytes in step."""
    frames[fi - 1] = data
    for _, b, idx in _buffers(header):
        if idx == fi:
            b["nbytes"] = len(data)


def _frame_dtype(header, fi):
    for _, b, idx in _buffers(header):
        if idx == fi and isinstance(b.get("dtype"), str):
            try:
                return np.dtype(b["dtype"])
            except TypeError:
                return None
    return None


def m_resize_frame(rng, header, frames):
    bufs = _buffers(header)
    if not bufs:
        return False
    _, b, fi = _pick(rng, bufs)
    if not 1 <= fi <= len(frames):
        return False
    data = old = frames[fi - 1]
    dt = _frame_dtype(header, fi)
    unit = dt.itemsize if dt is not None and rng.integers(4) else 1
    delta = unit * int(_pick(rng, [1, 1, 2, 3, 8]))
    if rng.integers(2):
        data = data[: max(0, len(data) - delta)]
    else:
        data = data + (b"\x00" * delta if rng.integers(2) else rng.bytes(delta))
    _set_frame(header, frames, fi, data)
    return len(data) != len(old)  # every buffer's length follows from shape and params


def m_flip(rng, header, frames):
    if not frames:
        return
    i = int(rng.integers(len(frames)))
    buf = bytearray(frames[i])
    if buf:
        for _ in range(int(rng.integers(1, 4))):
            j = int(rng.integers(len(buf)))
            buf[j] ^= 1 << int(rng.integers(8))
    frames[i] = bytes(buf)


def m_payload(rng, header, frames):
    """Payload values that look almost right: special floats (in scales or values),
    out-of-range / repeated / unsorted indices, saturated code bytes."""
    bufs = _buffers(header)
    if not bufs:
        return
    desc, _, fi = _pick(rng, bufs)
    if not 1 <= fi <= len(frames) or not frames[fi - 1]:
        return
    dt = _frame_dtype(header, fi)
    raw = frames[fi - 1]
    if dt is None or len(raw) % dt.itemsize:
        return
    arr = np.frombuffer(raw, dt.newbyteorder("<")).copy()
    i = int(rng.integers(arr.size))
    with np.errstate(over="ignore"):
        _set_values(rng, desc, arr, i, dt)
    frames[fi - 1] = arr.tobytes()


def _set_values(rng, desc, arr, i, dt):
    if dt.kind == "f":
        if rng.integers(4):
            arr[i] = _pick(rng, BAD_SCALES)
        else:
            arr[:] = _pick(rng, BAD_SCALES)
    elif dt == np.uint8 and rng.integers(2):
        arr[i] = _pick(rng, [0xFF, 0x80, 0x00, 0x0F, 0xF0])
    elif dt.kind == "u":
        n = max(_numel(desc) or 0, 0)
        top = np.iinfo(dt).max
        choices = [min(n, top), top, min(n - 1, top) if n else 0]
        if arr.size > 1:
            choices += [arr[i - 1], arr[(i + 1) % arr.size]]
        arr[i] = _pick(rng, choices)
        if arr.size > 1 and rng.integers(3) == 0:
            arr[::-1].sort()  # descending
    else:
        arr[i] = int(rng.integers(-128, 128))


def m_random_frame(rng, header, frames):
    if frames:
        i = int(rng.integers(len(frames)))
        frames[i] = rng.bytes(len(frames[i]))


def m_frame_count(rng, header, frames):
    if frames and rng.integers(2):
        del frames[int(rng.integers(len(frames)))]
    else:
        frames.insert(int(rng.integers(len(frames) + 1)), rng.bytes(int(rng.integers(0, 16))))
    return True


def _layout(desc):
    """(value codec, position of its first buffer, mask kind) of a descriptor, or None."""
    codec, params, bufs = desc.get("codec"), desc.get("params"), desc.get("buffers")
    if not isinstance(codec, str) or not isinstance(params, dict) or not isinstance(bufs, list):
        return None
    if not all(isinstance(b, dict) and type(b.get("frame")) is int for b in bufs):
        return None
    if codec.startswith(("topk", "randk")):
        values = codec.partition("+")[2] or "fp32"
        mask = params.get("mask")
        return values, 2 if mask == "golomb" else 1, mask
    return codec, 0, None


def _frame_array(frames, buf, dtype):
    fi = buf["frame"]
    if not 1 <= fi <= len(frames) or len(frames[fi - 1]) % np.dtype(dtype).itemsize:
        return None
    return np.frombuffer(frames[fi - 1], dtype).copy()


def m_semantic(rng, header, frames):
    """Right sizes, wrong meaning: quantizer steps that are negative, -0.0, subnormal or
    non-finite, lo non-finite, a top value that overflows; negative or non-finite sign
    scales and QSGD norms; QSGD levels above s; index masks out of range, repeated or
    unsorted; a flipped bitmap bit. Each must be refused."""
    descs = [d for d in _descs(header) if _layout(d)]
    if not descs:
        return False
    d = _pick(rng, descs)
    values, first, mask = _layout(d)
    bufs, name = d["buffers"], values.split(":")[0]
    if mask in ("index", "bitmap") and rng.integers(2) and bufs:
        return _bad_mask(rng, d, frames, mask)
    if len(bufs) < first + 2 or name in FLOAT_CODECS:
        return False
    scales = _frame_array(frames, bufs[first + 1], "<f4")
    if scales is None or not scales.size:
        return False
    if name == "qsgd" and rng.integers(2):
        return _bad_qsgd_level(rng, d, frames, values, first)
    if name[1:].isdigit() and scales.size < 2:
        return False
    g = int(rng.integers(scales.size // 2 if name[1:].isdigit() else scales.size))
    bad = [-1.5, -0.0, np.nan, np.inf, -np.inf]
    if name[1:].isdigit():  # qK: (lo, step) pairs
        what = int(rng.integers(3))
        if what == 0:
            scales[2 * g + 1] = _pick(rng, [*bad, 1e-40])
        elif what == 1:
            scales[2 * g] = _pick(rng, [np.nan, np.inf, -np.inf])
        else:
            scales[2 * g : 2 * g + 2] = F32.max
    else:  # sign scales, QSGD norms
        scales[g] = _pick(rng, bad)
    frames[bufs[first + 1]["frame"] - 1] = scales.tobytes()
    return True


def _bad_mask(rng, desc, frames, mask):
    buf, n, k = desc["buffers"][0], _numel(desc), desc["params"].get("k")
    if n is None or type(k) is not int:
        return False
    if mask == "bitmap":
        bits = _frame_array(frames, buf, np.uint8)
        if bits is None or not bits.size:
            return False
        bits[int(rng.integers(bits.size))] ^= 1 << int(rng.integers(8))
    else:
        idx = _frame_array(frames, buf, index_dtype(n))
        if idx is None or idx.size != k or not k:
            return False
        i = int(rng.integers(k))
        top = np.iinfo(idx.dtype).max
        what = int(rng.integers(3)) if k >= 2 else 0
        if what == 0 and n <= top:
            idx[i] = _pick(rng, [n, top])  # out of range
        elif what == 0:
            return False
        elif what == 1:
            idx[i] = idx[i - 1] if i else idx[1]  # repeated
        else:
            idx[[i, i - 1]] = idx[[i - 1, i]]  # unsorted
        bits = idx
    frames[buf["frame"] - 1] = bits.tobytes()
    return True


def _bad_qsgd_level(rng, desc, frames, spec, first):
    s = int(spec.split("s=")[1].split(":")[0]) if "s=" in spec else 16
    b = s.bit_length()
    if s + 1 >= 1 << b:  # every level the bits can hold is valid
        return False
    params, n = desc["params"], _numel(desc)
    n = params.get("k") if first else n
    if type(n) is not int or n <= 0:
        return False
    packed = _frame_array(frames, desc["buffers"][first], np.uint8)
    if packed is None or packed.size != packed_nbytes(n, b + 1):
        return False
    try:
        codes = unpack_codes(packed, b + 1, n)
    except WireError:  # an earlier mutation of this case broke the codes already
        return False
    codes[int(rng.integers(n))] = int(rng.integers(s + 1, 1 << b)) | (int(rng.integers(2)) << b)
    frames[desc["buffers"][first]["frame"] - 1] = pack_codes(codes, b + 1).tobytes()
    return True


MUTATORS = [
    (m_version, 1),
    (m_top_level, 2),
    (m_name, 1),
    (m_codec, 2),
    (m_shape, 4),
    (m_params, 4),
    (m_buffer_desc, 3),
    (m_resize_frame, 4),
    (m_flip, 3),
    (m_payload, 4),
    (m_semantic, 4),
    (m_random_frame, 1),
    (m_frame_count, 1),
]
_WEIGHTS = np.array([w for _, w in MUTATORS], float) / sum(w for _, w in MUTATORS)


def _clamp_ints(obj):
    """Stacked mutations can step past msgpack's 64-bit integers: clamp to its range."""
    if isinstance(obj, dict):
        return {k: _clamp_ints(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clamp_ints(v) for v in obj]
    if type(obj) is int:
        return min(max(obj, -(2**63)), 2**64 - 1)
    return obj


def _case(rng, corpus):
    """One mutated message: (frames or a blob, names of the mutations applied, whether the
    decoder must refuse it). A mutator returns True when its change certainly makes the
    message invalid; that is only relied on when it is the one mutation of the case (a
    later one could repair the message, e.g. by resetting params)."""
    head, bufs = corpus[int(rng.integers(len(corpus)))]
    header = msgpack.unpackb(head)
    frames = list(bufs)
    applied, invalid = [], False
    for _ in range(1 + int(rng.integers(3) == 0) + int(rng.integers(6) == 0)):
        fn = MUTATORS[int(rng.choice(len(MUTATORS), p=_WEIGHTS))][0]
        invalid = bool(fn(rng, header, frames))
        applied.append(fn.__name__)
    must_reject = invalid and len(applied) == 1
    blob = rng.integers(20) == 0
    out = [msgpack.packb(_clamp_ints(header), use_bin_type=True), *frames]
    if blob:  # the file form: mutate the blob itself
        data = bytearray(to_blob(out))
        j = int(rng.integers(len(data)))
        what = int(rng.integers(3))
        if what == 0:
            data[j] ^= 1 << int(rng.integers(8))
        elif what == 1:
            del data[j:]
        else:
            data[j:j] = rng.bytes(int(rng.integers(1, 9)))
        applied.append("blob")
        return bytes(data), applied, False  # a flipped bit could undo the mutation
    return out, applied, must_reject


def _decode(frames):
    if isinstance(frames, bytes):
        frames = from_blob(frames)
    msg = unpack_message(frames, max_decoded_bytes=CAP)
    return msg, decode_tensors(msg.tensors)


def _check_output(msg, out):
    assert len(out) == len(msg.tensors)
    for rec in msg.tensors:
        y = out[rec.name]
        assert y.dtype == np.float32 and y.shape == tuple(rec.shape)
        assert y.flags.writeable
        value_codec = rec.codec.split("+")[-1] if "+" in rec.codec else rec.codec
        if rec.codec.startswith(("topk", "randk")) and "+" not in rec.codec:
            value_codec = "fp32"
        if value_codec.split(":")[0] not in FLOAT_CODECS:
            assert np.isfinite(y).all(), (rec.codec, "non-finite output from a lossy codec")
        if rec.codec.startswith(("topk", "randk")):
            assert np.count_nonzero(y) <= rec.params["k"]


def test_structured_fuzz_only_wire_error():
    rng = np.random.default_rng(SEED)
    corpus = _corpus(rng)
    for head, bufs in corpus:  # every seed message is valid
        _check_output(*_decode([head, *bufs]))
    start = time.perf_counter()
    counts = {"ok": 0, "rejected": 0}
    per_mutator = {fn.__name__: [0, 0] for fn, _ in MUTATORS}
    slowest = peak = measured = refused = 0
    for first in range(0, CASES, BATCH):
        batch = [_case(rng, corpus) for _ in range(min(BATCH, CASES - first))]
        traced = (first // BATCH) % TRACE_EVERY == 0
        if traced:  # traces the decodes only, not the mutations
            tracemalloc.start()
            measured += len(batch)
        try:
            for j, (frames, applied, must_reject) in enumerate(batch):
                if traced:
                    tracemalloc.reset_peak()
                    base = tracemalloc.get_traced_memory()[0]
                t0 = time.perf_counter()
                try:
                    msg, out = _decode(frames)
                    ok = True
                except WireError:
                    ok = False
                except Exception as exc:  # noqa: BLE001 - the point of the test
                    what = f"case {first + j} ({'+'.join(applied)})"
                    pytest.fail(f"{what}: {type(exc).__name__}: {exc}")
                slowest = max(slowest, time.perf_counter() - t0)
                if traced:
                    peak = max(peak, tracemalloc.get_traced_memory()[1] - base)
                counts["ok" if ok else "rejected"] += 1
                for name in applied:
                    if name in per_mutator:
                        per_mutator[name][ok] += 1
                if ok:
                    assert not must_reject, f"case {first + j} ({applied[0]}) was accepted"
                    _check_output(msg, out)
                    del msg, out
                else:
                    refused += must_reject
        finally:
            tracemalloc.stop()
    elapsed = time.perf_counter() - start
    print(
        f"\n{CASES} cases in {elapsed:.1f} s: {counts}; peak traced memory of one decode "
        f"{peak / 2**20:.1f} MiB over {measured} traced cases; {refused} known-invalid cases "
        "all refused; slowest decode "
        f"{slowest * 1e3:.1f} ms"
    )
    assert counts["ok"] + counts["rejected"] == CASES
    assert refused > CASES // 5  # cases known to be invalid, all refused
    assert counts["rejected"] > CASES // 2 and counts["ok"] > CASES // 20  # both paths
    for name, (rejected, _) in per_mutator.items():
        assert rejected > 0, f"{name} never produced a rejected message"
    assert peak < PEAK_LIMIT, peak
    assert slowest < 2.0  # nothing hangs (the largest valid decodes take ~10 ms unloaded)
    assert elapsed < 50
