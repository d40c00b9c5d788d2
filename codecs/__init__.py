"""fedsim.codecs: wire format and tensor codecs (numpy + msgpack only).

Imports numpy, msgpack and the standard library, nothing else (tests check this).
"""

from .base import Codec, record_nbytes
from .error_feedback import ErrorFeedback
from .pipeline import codec_for_record, decode_tensors, encode_tensors, parse_codec
from .wire import (
    MAX_DECODED_BYTES,
    Message,
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

__all__ = [
    "Codec",
    "ErrorFeedback",
    "MAX_DECODED_BYTES",
    "Message",
    "TensorRecord",
    "WireError",
    "codec_for_record",
    "decode_tensors",
    "encode_tensors",
    "from_blob",
    "pack_message",
    "parse_codec",
    "payload_bytes",
    "read_frames",
    "record_nbytes",
    "to_blob",
    "unpack_message",
    "wire_bytes",
    "write_frames",
]
