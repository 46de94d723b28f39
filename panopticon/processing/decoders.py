"""The decoder of a stream, found from the flow table's import path when the first batch of it arrives.

Every decoder keeps one contract: one Kafka record in, one entry per document it holds out (`Decoded`, or
`Rejected` with a reason, and with the item's index when the record holds many), never an exception.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache, partial
from importlib import import_module
from typing import Protocol

from panopticon.flow import Stream
from panopticon.processing.schemas import DecodedRecord


class Decoder(Protocol):
    def __call__(self, raw: bytes, *, topic: str, partition: int, offset: int, now_ms: int,
                 max_bytes: int) -> DecodedRecord: ...


@cache
def decoder_for(stream: Stream, encoding: str | None = None) -> Decoder:
    """The function `stream.decoder` names ("module:function"); ImportError / AttributeError if it is wrong.

    `encoding` (the value of the stream's `encoding_setting`) is bound as the decoder's `encoding` argument;
    None leaves the decoder's default.
    """
    module, _, name = stream.decoder.partition(":")
    decoder: Decoder = getattr(import_module(module), name)
    if encoding is not None:
        accepts_encoding: Callable[..., DecodedRecord] = decoder
        bound: Decoder = partial(accepts_encoding, encoding=encoding)
        return bound
    return decoder
