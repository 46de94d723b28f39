"""Reading an OTLP/HTTP request body without trusting its size: capped as sent, and capped again as inflated.

The cap is checked before anything is read (Content-Length), while reading (a chunked body has no length),
and while inflating: gzip is decompressed piece by piece with `max_length`, so a gzip bomb costs at most the
cap in memory and stops with BodyTooLarge instead of filling the machine.
"""

from __future__ import annotations

import zlib
from typing import IO

CHUNK = 64 * 1024


class BodyError(ValueError):
    """The body cannot be read as sent; the HTTP status says which way."""

    status = 400


class BodyTooLarge(BodyError):
    status = 413


class UnsupportedEncoding(BodyError):
    status = 415


def read_body(stream: IO[bytes], content_length: int | None, content_encoding: str, cap: int) -> bytes:
    """The request's body, decompressed; BodyTooLarge past `cap` bytes before or after decompression."""
    encoding = content_encoding.strip().lower()
    if encoding not in ("", "identity", "gzip"):
        raise UnsupportedEncoding(f"Content-Encoding {content_encoding!r} is not supported: use gzip or none")
    if content_length is not None and content_length > cap:
        raise BodyTooLarge(f"body of {content_length} bytes is over the limit of {cap} (OTLP_MAX_BODY_BYTES)")
    raw = _read_capped(stream, cap)
    return gunzip(raw, cap) if encoding == "gzip" else raw


def _read_capped(stream: IO[bytes], cap: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        piece = stream.read(min(CHUNK, cap + 1 - size))
        if not piece:
            return b"".join(parts)
        size += len(piece)
        if size > cap:
            raise BodyTooLarge(f"body is over the limit of {cap} bytes (OTLP_MAX_BODY_BYTES)")
        parts.append(piece)


def gunzip(data: bytes, cap: int) -> bytes:
    """`data` (one or more gzip members) inflated, never holding more than `cap` + 1 inflated bytes."""
    out = bytearray()
    pending = data
    while pending:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            while pending:
                out += inflater.decompress(pending, cap + 1 - len(out))
                if len(out) > cap:
                    raise BodyTooLarge(f"body inflates to more than {cap} bytes (OTLP_MAX_BODY_BYTES)")
                pending = inflater.unconsumed_tail
            if not inflater.eof:  # output held back by max_length, if any (bounded like the rest)
                out += inflater.decompress(b"", cap + 1 - len(out))
        except zlib.error as exc:
            raise BodyError(f"body is not valid gzip: {exc}") from None
        if len(out) > cap:
            raise BodyTooLarge(f"body inflates to more than {cap} bytes (OTLP_MAX_BODY_BYTES)")
        if not inflater.eof:
            raise BodyError("body is not valid gzip: the stream ends early")
        pending = inflater.unused_data  # a second member follows
    return bytes(out)
