import numpy as np
import pytest
from fedsim.codecs.wire import (
    DTYPES,
    MAX_DECODED_BYTES,
    TensorRecord,
    WireError,
    from_blob,
    pack_message,
    payload_bytes,
    read_frames,
    to_blob,
    unpack_message,
    wire_bytes,
    write_frames,
)


def _rec(name="w", n=10, dtype="float32"):
    buf = np.arange(n).astype(DTYPES[dtype])
    return TensorRecord(name, "fp32", (n,), {"a": 1}, (buf,))


def test_round_trip_zero_copy_views():
    recs = [_rec("a", 5), TensorRecord("b", "x", (2, 3), {}, (b"\x01\x02", np.zeros(3, np.int64)))]
    frames = pack_message("update", {"round": 3, "sender": "c7"}, recs)
    msg = unpack_message(frames)
    assert msg.msg_type == "update" and msg.meta == {"round": 3, "sender": "c7"}
    assert [t.name for t in msg.tensors] == ["a", "b"]
    assert msg.tensors[1].shape == (2, 3)
    assert msg.tensors[0].params == {"a": 1}
    np.testing.assert_array_equal(msg.tensors[0].buffers[0], np.arange(5, dtype=np.float32))
    assert msg.tensors[1].buffers[0].tobytes() == b"\x01\x02"
    assert msg.tensors[1].buffers[1].dtype == np.dtype("<i8")
    assert not msg.tensors[0].buffers[0].flags.owndata  # a view into the frame


@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_every_allowed_dtype(dtype):
    frames = pack_message("m", {}, [_rec(n=7, dtype=dtype)])
    buf = unpack_message(frames).tensors[0].buffers[0]
    assert buf.dtype == DTYPES[dtype] and buf.size == 7


def test_byte_counts():
    frames = [b"x" * 255, b"y" * 256, b""]
    assert payload_bytes(frames) == 511
    assert wire_bytes(frames) == 255 + 2 + 256 + 9 + 2
    frames = pack_message("m", {}, [_rec(n=1000)])
    assert payload_bytes(frames) == len(frames[0]) + 4000


def test_blob_round_trip(tmp_path):
    frames = pack_message("m", {"k": [1, 2]}, [_rec(n=3), _rec("z", 0)])
    blob = to_blob(frames)
    back = from_blob(blob)
    assert [bytes(f) for f in back] == [bytes(f) for f in frames]
    write_frames(tmp_path / "msg.bin", frames)
    assert [bytes(f) for f in read_frames(tmp_path / "msg.bin")] == [bytes(f) for f in frames]
    for bad in (blob[:-1], blob + b"\0", b"XXXX" + blob[4:], blob[:10]):
        with pytest.raises(WireError):
            from_blob(bad)


def test_rejects_bad_dtypes_on_pack():
    with pytest.raises(WireError):
        pack_message("m", {}, [TensorRecord("w", "c", (1,), {}, (np.zeros(1, object),))])
    with pytest.raises(WireError):
        pack_message("m", {"x": object()}, [])


def _frames_with_header(header):
    import msgpack

    return [msgpack.packb(header)]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda h: h.update(version=2),
        lambda h: h.update(extra=1),
        lambda h: h.update(meta=[1]),
        lambda h: h["tensors"][0].update(shape=[-1]),
        lambda h: h["tensors"][0].update(shape=[True]),
        lambda h: h["tensors"][0].update(name=""),
        lambda h: h["tensors"][0]["buffers"][0].update(dtype="object"),
        lambda h: h["tensors"][0]["buffers"][0].update(dtype="O"),
        lambda h: h["tensors"][0]["buffers"][0].update(nbytes=12),
        lambda h: h["tensors"][0]["buffers"][0].update(frame=2),
        lambda h: h["tensors"][0]["buffers"][0].update(frame=0),
        lambda h: h["tensors"].append(h["tensors"][0]),
    ],
)
def test_rejects_malformed_headers(mutate):
    import msgpack

    frames = pack_message("m", {}, [_rec(n=4)])
    header = msgpack.unpackb(frames[0])
    mutate(header)
    with pytest.raises(WireError):
        unpack_message([msgpack.packb(header), *frames[1:]])


def test_rejects_frame_count_mismatch_and_garbage():
    frames = pack_message("m", {}, [_rec(n=4)])
    with pytest.raises(WireError):
        unpack_message(frames[:1])
    with pytest.raises(WireError):
        unpack_message([*frames, b"extra"])
    with pytest.raises(WireError):
        unpack_message([])
    with pytest.raises(WireError):
        unpack_message([b"\xc1"])
    with pytest.raises(WireError):
        unpack_message([b"\x93\x01\x02"])  # an array, not a map
    with pytest.raises(WireError):  # odd length for a float32 buffer
        rec = TensorRecord("w", "fp32", (1,), {}, (b"12345",))
        f = pack_message("m", {}, [rec])
        import msgpack

        h = msgpack.unpackb(f[0])
        h["tensors"][0]["buffers"][0]["dtype"] = "float32"
        unpack_message([msgpack.packb(h), f[1]])


def test_decoded_size_cap():
    rec = TensorRecord("w", "topk:1", (1 << 20, 1 << 20), {}, ())
    frames = pack_message("m", {}, [rec])
    with pytest.raises(WireError, match="cap"):
        unpack_message(frames)
    small = pack_message("m", {}, [_rec(n=100)])
    unpack_message(small, max_decoded_bytes=400)
    with pytest.raises(WireError):
        unpack_message(small, max_decoded_bytes=399)
    assert MAX_DECODED_BYTES == 1 << 31


def test_header_size_cap():
    frames = pack_message("m", {"pad": "x" * 5000}, [])
    with pytest.raises(WireError):
        unpack_message(frames, max_header_bytes=1000)
