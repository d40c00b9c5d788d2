"""fedsim.codecs: wire format and tensor codecs (numpy + msgpack only)."""
