"""Reading request bodies: the cap holds before and after gzip, and a gzip bomb stops at the cap."""

from __future__ import annotations

import gzip
import io
import resource
import zlib

import pytest

from panopticon.otlp.body import BodyError, BodyTooLarge, UnsupportedEncoding, gunzip, read_body

CAP = 1 << 20


def bomb(inflated: int) -> bytes:
    """`inflated` zero bytes as gzip, made piece by piece (a 1 GB bomb is about 1 MB)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    piece = bytes(1 << 20)
    return b"".join([packer.compress(piece) for _ in range(inflated >> 20)] + [packer.flush()])


class Trickle(io.RawIOBase):
    """A body with no Content-Length that never ends, read a little at a time (as a chunked upload)."""

    def __init__(self) -> None:
        self.given = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = b"x" * min(size if size > 0 else 4096, 4096)
        self.given += len(chunk)
        return chunk


def test_plain_and_gzip_bodies_are_read_whole() -> None:
    data = b"span" * 10_000
    assert read_body(io.BytesIO(data), len(data), "", CAP) == data
    assert read_body(io.BytesIO(gzip.compress(data)), None, "GZIP", CAP) == data
    assert gunzip(gzip.compress(b"a") + gzip.compress(b"b"), CAP) == b"ab"


def test_a_declared_length_over_the_cap_is_refused_before_reading() -> None:
    stream = io.BytesIO(b"")
    with pytest.raises(BodyTooLarge, match="100000000 bytes is over the limit"):
        read_body(stream, 100_000_000, "", CAP)


def test_an_endless_body_without_length_stops_at_the_cap() -> None:
    stream = Trickle()
    with pytest.raises(BodyTooLarge):
        read_body(stream, None, "", CAP)  # type: ignore[arg-type]
    assert stream.given <= CAP + 4096


def test_a_gzip_bomb_stops_at_the_cap_without_inflating_it() -> None:
    payload = bomb(1 << 30)
    assert len(payload) < CAP * 2
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(BodyTooLarge, match="inflates to more than"):
        gunzip(payload, 4 * CAP)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 64 * 1024, f"peak memory grew by {grown_kib} KiB for a 1 GiB bomb"


def test_bad_gzip_and_unknown_encodings() -> None:
    with pytest.raises(BodyError, match="not valid gzip"):
        read_body(io.BytesIO(b"not gzip"), None, "gzip", CAP)
    with pytest.raises(BodyError, match="ends early"):
        gunzip(gzip.compress(b"x" * 1000)[:-12], CAP)
    with pytest.raises(UnsupportedEncoding, match="'br' is not supported"):
        read_body(io.BytesIO(b""), 0, "br", CAP)
