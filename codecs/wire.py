"""The wire format: one msgpack header frame, then raw little-endian buffer frames.

Frame 0 describes the message and every tensor buffer; frames 1..n are the buffers
themselves, so tensors never pass through msgpack and decode as zero-copy
``np.frombuffer`` views. Everything read here may come from an untrusted peer: any
malformed input raises ``WireError`` and nothing is allocated before the declared sizes
have been checked against the real frame lengths. docs/wire-format.md is the reference.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

WIRE_VERSION = 1
MAX_HEADER_BYTES = 1 << 20  # frame 0; worst-case msgpack object blow-up stays ~60 MiB
MAX_DECODED_BYTES = 1 << 31  # sum over tensors of prod(shape) * 4 (the float32 output)
MAX_NDIM = 32
MAX_NAME_LEN = 1024
# Ceiling on the values a shape may describe (its zero entries left out) when no decoded-size
# cap applies (Codec.decode on a record built in memory): far above any real tensor, far
# below what overflows numpy's size arithmetic.
MAX_ELEMENTS = 1 << 48

# Allowed buffer dtypes, by wire name. Always little-endian; never object.
DTYPES: dict[str, np.dtype] = {
    name: np.dtype(code)
    for name, code in (
        ("uint8", "<u1"),
        ("int8", "<i1"),
        ("uint16", "<u2"),
        ("int16", "<i2"),
        ("uint32", "<u4"),
        ("int32", "<i4"),
        ("uint64", "<u8"),
        ("int64", "<i8"),
        ("float16", "<f2"),
        ("float32", "<f4"),
        ("float64", "<f8"),
    )
}
_DTYPE_NAMES = {(dt.kind, dt.itemsize): name for name, dt in DTYPES.items()}

_HEADER_KEYS = {"version", "msg_type", "meta", "tensors"}
_TENSOR_KEYS = {"name", "codec", "shape", "params", "buffers"}
_BUFFER_KEYS = {"dtype", "frame", "nbytes"}

BLOB_MAGIC = b"FSWB"
BLOB_VERSION = 1
_BLOB_HEAD = struct.Struct("<4sHHI")  # magic, version, reserved (0), frame count
_ZMTP_SHORT_MAX = 255


class WireError(ValueError):
    """A message, blob or tensor record is malformed or violates a limit."""


@dataclass(frozen=True, eq=False)
class TensorRecord:
    """One encoded tensor: which codec made it, its shape, small params and raw buffers."""

    name: str
    codec: str
    shape: tuple[int, ...]
    params: dict
    buffers: tuple  # 1-D numpy arrays of an allowed dtype, or bytes (= uint8)


@dataclass(frozen=True, eq=False)
class Message:
    """A decoded message: its type, the small metadata map and the tensor records."""

    msg_type: str
    meta: dict
    tensors: tuple[TensorRecord, ...]


def dtype_name(dtype: np.dtype) -> str:
    """Wire name of an allowed numpy dtype (byte order is ignored: the wire is little-endian)."""
    dt = np.dtype(dtype)
    name = _DTYPE_NAMES.get((dt.kind, dt.itemsize))
    if name is None:
        raise WireError(f"dtype {dt} is not allowed on the wire")
    return name


def _buffer_array(buf: Any) -> np.ndarray:
    """A buffer as a contiguous 1-D little-endian array of an allowed dtype."""
    if isinstance(buf, np.ndarray):
        arr = buf
    elif isinstance(buf, bytes | bytearray | memoryview):
        arr = np.frombuffer(buf, dtype=np.uint8)
    else:
        raise WireError(f"buffer of type {type(buf).__name__} is not an array or bytes")
    if arr.ndim != 1:
        raise WireError(f"buffers must be 1-D, got shape {arr.shape}")
    want = DTYPES[dtype_name(arr.dtype)]
    if arr.dtype != want or not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr, dtype=want)
    return arr


def _frame_of(arr: np.ndarray) -> memoryview:
    return memoryview(arr).cast("B") if arr.size else memoryview(b"")


def pack_message(
    msg_type: str, meta: dict, tensors: Sequence[TensorRecord]
) -> list[bytes | memoryview]:
    """Frames of one message: the msgpack header, then every buffer as a raw frame.

    Buffer frames are zero-copy memoryviews of the records' arrays.
    """
    frames: list[bytes | memoryview] = [b""]
    descs = []
    for rec in tensors:
        bufs = []
        for buf in rec.buffers:
            arr = _buffer_array(buf)
            bufs.append(
                {"dtype": dtype_name(arr.dtype), "frame": len(frames), "nbytes": arr.nbytes}
            )
            frames.append(_frame_of(arr))
        descs.append(
            {
                "name": rec.name,
                "codec": rec.codec,
                "shape": [int(d) for d in rec.shape],
                "params": rec.params,
                "buffers": bufs,
            }
        )
    header = {"version": WIRE_VERSION, "msg_type": msg_type, "meta": meta, "tensors": descs}
    try:
        frames[0] = msgpack.packb(header, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise WireError(f"header is not msgpack-serializable: {exc}") from exc
    return frames


def _nbytes(frame: Any) -> int:
    return memoryview(frame).nbytes


def payload_bytes(frames: Sequence[Any]) -> int:
    """Sum of the raw frame lengths."""
    return sum(_nbytes(f) for f in frames)


def wire_bytes(frames: Sequence[Any]) -> int:
    """Bytes on a ZeroMQ (ZMTP 3) connection: frames plus 2 (len<=255) or 9 bytes framing each."""
    total = 0
    for f in frames:
        n = _nbytes(f)
        total += n + (2 if n <= _ZMTP_SHORT_MAX else 9)
    return total


def _check(cond: bool, what: str) -> None:
    if not cond:
        raise WireError(what)


def is_int(v: Any) -> bool:
    """A real integer: msgpack's true/false come back as bool, a subclass of int."""
    return isinstance(v, int) and not isinstance(v, bool)


def short_repr(v: Any, limit: int = 80) -> str:
    """repr(v) cut to `limit` characters: error messages quote untrusted values."""
    text = repr(v)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_shape(shape: Any, max_elements: int = MAX_ELEMENTS) -> tuple[int, ...]:
    """shape as a tuple of ints; WireError unless it is a list or tuple of at most MAX_NDIM
    integers >= 0 (not bool, not float) whose nonzero entries multiply to at most
    max_elements. Zeros are left out of that product so that an empty tensor cannot declare
    absurd dimensions (``[2**63 - 1, 0]``) that overflow numpy or a group count."""
    if not isinstance(shape, tuple | list) or len(shape) > MAX_NDIM:
        raise WireError(f"bad shape {short_repr(shape)}")
    dims = []
    for d in shape:
        if isinstance(d, np.integer):
            d = int(d)
        if not is_int(d) or d < 0:
            raise WireError(f"bad shape {short_repr(shape)}: dimensions must be integers >= 0")
        dims.append(d)
    if math.prod(d for d in dims if d) > max_elements:
        raise WireError(
            f"shape {short_repr(shape)} describes more than the cap of {max_elements} values"
        )
    return tuple(dims)


def strict_unpackb(frame: Any, max_bytes: int, what: str = "header") -> Any:
    """One msgpack object from an untrusted frame of at most max_bytes, the way the wire
    reads frame 0: UTF-8 strings, str map keys only, every length limited by the frame
    size, no ext types (timestamps included). WireError for anything else; the runtime's
    envelopes can use it too."""
    try:
        size = _nbytes(frame)
    except (TypeError, ValueError) as exc:
        raise WireError(f"{what} is not a buffer: {exc}") from None
    _check(size <= max_bytes, f"{what} frame of {size} bytes exceeds {max_bytes}")
    try:
        return msgpack.unpackb(
            frame,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_str_len=size,
            max_bin_len=size,
            max_array_len=size,
            max_map_len=size,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises many types for bad input; all mean "malformed"
        raise WireError(f"{what} is not valid msgpack: {exc}") from None


def _decode_header(frame: Any, max_header_bytes: int) -> dict:
    header = strict_unpackb(frame, max_header_bytes)
    _check(isinstance(header, dict), "header is not a map")
    _check(
        set(header) == _HEADER_KEYS,
        f"header keys {short_repr(sorted(map(str, header)))} are not {sorted(_HEADER_KEYS)}",
    )
    version = header["version"]
    _check(
        is_int(version) and version == WIRE_VERSION,
        f"unsupported wire version {short_repr(version)}",
    )
    _check(isinstance(header["msg_type"], str), "msg_type is not a string")
    _check(isinstance(header["meta"], dict), "meta is not a map")
    _check(all(isinstance(k, str) for k in header["meta"]), "meta keys must be strings")
    _check(isinstance(header["tensors"], list), "tensors is not an array")
    return header


def _decode_tensor(
    desc: Any, frames: Sequence[Any], next_frame: int, max_elements: int
) -> TensorRecord:
    _check(isinstance(desc, dict) and set(desc) == _TENSOR_KEYS, "bad tensor descriptor keys")
    name, codec, shape, params, bufs = (
        desc[k] for k in ("name", "codec", "shape", "params", "buffers")
    )
    _check(isinstance(name, str) and 0 < len(name) <= MAX_NAME_LEN, "bad tensor name")
    _check(isinstance(codec, str) and 0 < len(codec) <= MAX_NAME_LEN, f"{name}: bad codec")
    _check(isinstance(shape, list), f"{name}: shape is not an array")
    try:
        shape = check_shape(shape, max_elements)
    except WireError as exc:
        raise WireError(f"{name}: {exc}") from None
    _check(isinstance(params, dict), f"{name}: params is not a map")
    _check(all(isinstance(k, str) for k in params), f"{name}: params keys must be strings")
    _check(isinstance(bufs, list), f"{name}: buffers is not an array")
    arrays = []
    for i, b in enumerate(bufs):
        _check(isinstance(b, dict) and set(b) == _BUFFER_KEYS, f"{name}: bad buffer {i}")
        dt = DTYPES.get(b["dtype"]) if isinstance(b["dtype"], str) else None
        _check(dt is not None, f"{name}: buffer {i} dtype {short_repr(b['dtype'])} not allowed")
        idx, nbytes = b["frame"], b["nbytes"]
        _check(
            is_int(idx) and idx == next_frame + i,
            f"{name}: buffer {i} frame index {short_repr(idx)}, expected {next_frame + i}",
        )
        _check(idx < len(frames), f"{name}: buffer {i} refers to missing frame {idx}")
        real = _nbytes(frames[idx])
        _check(
            is_int(nbytes) and nbytes == real,
            f"{name}: buffer {i} declares {short_repr(nbytes)} bytes, frame has {real}",
        )
        _check(
            real % dt.itemsize == 0,
            f"{name}: buffer {i} length {real} not a multiple of {dt.itemsize}",
        )
        arrays.append(np.frombuffer(frames[idx], dtype=dt))
    return TensorRecord(name, codec, shape, params, tuple(arrays))


def _as_frame(f: Any) -> bytes | bytearray | memoryview:
    """A frame as bytes or a flat, contiguous memoryview of bytes (zmq.Frame, arrays...)."""
    if isinstance(f, bytes | bytearray):
        return f
    try:
        view = f if isinstance(f, memoryview) else memoryview(f)
        if view.format != "B" or view.ndim != 1 or not view.c_contiguous:
            view = view.cast("B")  # TypeError when not C-contiguous
    except (TypeError, ValueError) as exc:
        raise WireError(f"frame is not a contiguous buffer: {exc}") from None
    return view


def unpack_message(
    frames: Sequence[bytes | memoryview | bytearray],
    *,
    max_decoded_bytes: int = MAX_DECODED_BYTES,
    max_header_bytes: int = MAX_HEADER_BYTES,
) -> Message:
    """Validate and decode frames into a Message whose buffers are zero-copy views.

    Raises WireError for any malformed input or for tensors whose float32 outputs would
    together exceed ``max_decoded_bytes``.
    """
    _check(isinstance(frames, Sequence) and len(frames) >= 1, "a message needs a header frame")
    frames = [_as_frame(f) for f in frames]
    header = _decode_header(frames[0], max_header_bytes)
    records = []
    next_frame = 1
    decoded = 0
    max_elements = max(max_decoded_bytes, 0) // 4
    for desc in header["tensors"]:
        rec = _decode_tensor(desc, frames, next_frame, max_elements)
        next_frame += len(rec.buffers)
        decoded += 4 * math.prod(rec.shape)
        _check(
            decoded <= max_decoded_bytes,
            f"decoded size exceeds the cap of {max_decoded_bytes} bytes",
        )
        records.append(rec)
    _check(
        next_frame == len(frames),
        f"message has {len(frames)} frames, header describes {next_frame}",
    )
    names = [r.name for r in records]
    _check(len(set(names)) == len(names), "duplicate tensor names")
    return Message(header["msg_type"], header["meta"], tuple(records))


def to_blob(frames: Sequence[Any]) -> bytes:
    """The single-blob form: magic, version, count, u64 length of each frame, then the frames."""
    lengths = [_nbytes(f) for f in frames]
    head = _BLOB_HEAD.pack(BLOB_MAGIC, BLOB_VERSION, 0, len(frames))
    return b"".join([head, struct.pack(f"<{len(lengths)}Q", *lengths), *map(bytes, frames)])


def from_blob(blob: bytes | bytearray | memoryview) -> list[memoryview]:
    """Split a blob back into frames (zero-copy memoryviews); WireError if malformed."""
    try:
        view = memoryview(blob).cast("B")
    except TypeError as exc:  # not a buffer, or not contiguous
        raise WireError(f"blob is not a contiguous buffer: {exc}") from None
    _check(len(view) >= _BLOB_HEAD.size, "blob shorter than its fixed header")
    magic, version, reserved, count = _BLOB_HEAD.unpack_from(view)
    _check(magic == BLOB_MAGIC, "not a fedsim wire blob (bad magic)")
    _check(version == BLOB_VERSION, f"unsupported blob version {version}")
    _check(reserved == 0, "blob reserved field is not zero")
    pos = _BLOB_HEAD.size
    _check(len(view) - pos >= 8 * count, "blob truncated in its length table")
    lengths = struct.unpack_from(f"<{count}Q", view, pos)
    pos += 8 * count
    _check(sum(lengths) == len(view) - pos, "blob frame lengths do not match its size")
    out = []
    for n in lengths:
        out.append(view[pos : pos + n])
        pos += n
    return out


def write_frames(path: str | os.PathLike, frames: Sequence[Any]) -> None:
    """Write frames as one blob: to a temporary file in the same folder, then rename."""
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as fh:
        fh.write(to_blob(frames))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_frames(path: str | os.PathLike) -> list[memoryview]:
    """Read a blob written by write_frames and split it into frames."""
    with open(path, "rb") as fh:
        return from_blob(fh.read())
