"""The .rdp compressed-file format (version 1); FORMAT.md describes it byte by byte.

    magic "TRDP" | version u8 | name length u8 | name (UTF-8) | fingerprint 8 bytes
    | count varint | height u8 | width u8 | channels u8 | seed u32 | payload length varint
    | payload | CRC-32 u32 of everything before it

Integers are little-endian; varints are unsigned LEB128. The payload is the
model's `compress` bitstring: ONE range-coded string for all digits. The
range decoder cannot tell a damaged string from a valid one, so the CRC (and
the explicit payload length) are what detect corruption and truncation.
"""

import dataclasses
import struct
import zlib

from tfrdp.errors import TfrdpError

MAGIC = b"TRDP"
VERSION = 1
FINGERPRINT_BYTES = 8
MAX_SEED = 2**32 - 1
_CRC = struct.Struct("<I")


class FormatError(TfrdpError):
    """The bytes are not a valid, intact tfrdp file."""


@dataclasses.dataclass(frozen=True)
class Header:
    model_name: str
    fingerprint: str  # 16 hex digits, as in the model's tfrdp.json
    count: int
    image_shape: tuple
    seed: int


def _varint(value):
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


class _Reader:
    def __init__(self, data):
        self.data, self.position = data, 0

    def take(self, size, what):
        if self.position + size > len(self.data):
            raise FormatError(f"file is truncated (in the {what})")
        chunk = self.data[self.position:self.position + size]
        self.position += size
        return chunk

    def varint(self, what):
        value = shift = 0
        while True:
            byte = self.take(1, what)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 63:
                raise FormatError(f"file is corrupted (bad {what})")


def pack(header, payload):
    """Returns the whole file for `header` and the range-coded `payload`."""
    name = header.model_name.encode("utf-8")
    if not 0 < len(name) < 256:
        raise TfrdpError(f"model name {header.model_name!r} must be 1 to 255 bytes")
    if not 0 <= header.seed <= MAX_SEED:
        raise TfrdpError(f"seed must be between 0 and {MAX_SEED}")
    body = b"".join([
        MAGIC, bytes([VERSION, len(name)]), name, bytes.fromhex(header.fingerprint),
        _varint(header.count), bytes(header.image_shape), struct.pack("<I", header.seed),
        _varint(len(payload)), payload])
    return body + _CRC.pack(zlib.crc32(body))


def unpack(data):
    """Checks and parses a file; returns (Header, payload) or raises FormatError."""
    if data[:len(MAGIC)] != MAGIC:
        raise FormatError("not a tfrdp compressed file (bad magic bytes)")
    reader = _Reader(data)
    reader.take(len(MAGIC), "magic")
    version = reader.take(1, "header")[0]
    if version != VERSION:
        raise FormatError(f"unsupported tfrdp file version {version} (this tfrdp reads "
                          f"version {VERSION})")
    name = reader.take(reader.take(1, "header")[0], "model name")
    fingerprint = reader.take(FINGERPRINT_BYTES, "header").hex()
    count = reader.varint("digit count")
    image_shape = tuple(reader.take(3, "header"))
    seed = struct.unpack("<I", reader.take(4, "header"))[0]
    payload = reader.take(reader.varint("payload length"), "payload")
    end = reader.position
    stored_crc = reader.take(_CRC.size, "checksum")
    if reader.position != len(data):
        raise FormatError(f"file is corrupted ({len(data) - reader.position} bytes after "
                          "its end)")
    if _CRC.unpack(stored_crc)[0] != zlib.crc32(data[:end]):
        raise FormatError("file is corrupted (checksum mismatch)")
    try:
        model_name = name.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError("file is corrupted (model name is not UTF-8)") from None
    return Header(model_name, fingerprint, count, image_shape, seed), payload
