"""Content-Encoding, decoded as it arrives under a byte cap (the fetch stage's bodies).

``layers_for`` turns a ``Content-Encoding`` value into decoders (gzip, deflate, br,
zstd; at most three stacked; anything else is refused) and ``BodyDecoder`` feeds each
chunk of the body through them, counting the output against the cap after
decompression: a bomb or an endless body raises ``Overflow`` as soon as it passes the
cap, never after it has filled memory, and every decoder step yields pieces of a
bounded size. An invalid or truncated stream raises ``Corrupt``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final, Protocol

import brotli
import zstandard

from monitor.errors import NewsmonError

__all__ = ["ACCEPT_ENCODING", "BodyDecoder", "Corrupt", "Layer", "Overflow", "layers_for"]

# What the fetcher offers: exactly what ``layers_for`` decodes.
ACCEPT_ENCODING: Final = "gzip, deflate, br, zstd"
_MAX_ENCODING_LAYERS: Final = 3
_CHUNK: Final = 64 * 1024  # output piece size for decompressors (bounds per-step memory)
# zstd can turn a few input bytes into 128 KiB (an RLE block), so its input is
# fed in small slices: at most ~1 MiB of output per step.
_ZSTD_SLICE: Final = 32
# RFC 9659: a zstd content-coding window larger than 8 MiB may be refused;
# a bigger window would make the decoder allocate that much up front.
_ZSTD_MAX_WINDOW: Final = 8 * 1024 * 1024


class Corrupt(NewsmonError):
    """The compressed stream is invalid or incomplete."""


class Overflow(NewsmonError):
    """A decoding layer produced more than its cap."""


class Layer(Protocol):
    """One content-coding: bytes in, decoded pieces out (each of a bounded size)."""

    def feed(self, data: bytes) -> Iterator[bytes]: ...

    def finish(self) -> Iterator[bytes]: ...


class _ZlibLayer:
    """gzip (multi-member) or deflate (zlib-wrapped, or raw as some servers send)."""

    def __init__(self, encoding: str) -> None:
        self._gzip = encoding in ("gzip", "x-gzip")
        self._obj: zlib._Decompress | None = zlib.decompressobj(31) if self._gzip else None
        self._head = b""  # deflate: bytes held until the wrapper can be recognised
        self._fed = False

    def _start_deflate(self, data: bytes) -> bytes:
        self._head += data
        if len(self._head) < 2:
            return b""
        cmf, flg = self._head[0], self._head[1]
        zlib_wrapped = cmf & 0x0F == 8 and (cmf << 8 | flg) % 31 == 0
        self._obj = zlib.decompressobj(15 if zlib_wrapped else -15)
        data, self._head = self._head, b""
        return data

    def feed(self, data: bytes) -> Iterator[bytes]:
        if not data:
            return
        self._fed = True
        if self._obj is None:
            data = self._start_deflate(data)
        buf = data
        try:
            while buf:
                assert self._obj is not None
                if self._obj.eof:
                    if not self._gzip:
                        return  # trailing bytes after a deflate stream: ignored
                    self._obj = zlib.decompressobj(31)  # next gzip member
                out = self._obj.decompress(buf, _CHUNK)
                buf = self._obj.unconsumed_tail or (self._obj.unused_data if self._obj.eof else b"")
                if out:
                    yield out
        except zlib.error as exc:
            raise Corrupt(str(exc)) from exc

    def finish(self) -> Iterator[bytes]:
        if not self._fed:
            return  # an empty body labelled as compressed: nothing to decode
        if self._obj is None or not self._obj.eof:
            raise Corrupt("compressed stream ended early")
        yield from ()


class _BrotliLayer:
    def __init__(self) -> None:
        self._obj = brotli.Decompressor()
        self._fed = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        if not data:
            return
        self._fed = True
        try:
            out = self._obj.process(data, output_buffer_limit=_CHUNK)
            # The decoder keeps input it could not expand within the limit; drain it
            # with empty calls until it has nothing more to give (can_accept_more_data()
            # alone turns True too early, with input still buffered).
            while out or not self._obj.can_accept_more_data():
                if out:
                    yield out
                out = self._obj.process(b"", output_buffer_limit=_CHUNK)
        except brotli.error as exc:
            raise Corrupt(str(exc)) from exc

    def finish(self) -> Iterator[bytes]:
        if self._fed and not self._obj.is_finished():
            raise Corrupt("brotli stream ended early")
        yield from ()


class _ZstdLayer:
    def __init__(self) -> None:
        self._dctx = zstandard.ZstdDecompressor(max_window_size=_ZSTD_MAX_WINDOW)
        self._obj = self._dctx.decompressobj()
        self._fed = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        if not data:
            return
        self._fed = True
        view = memoryview(data)
        try:
            for start in range(0, len(view), _ZSTD_SLICE):
                piece = view[start : start + _ZSTD_SLICE]
                while piece:
                    if self._obj.eof:  # concatenated frames are allowed (RFC 8878)
                        self._obj = self._dctx.decompressobj()
                    out = self._obj.decompress(piece)
                    piece = memoryview(self._obj.unused_data) if self._obj.eof else memoryview(b"")
                    if out:
                        yield out
        except zstandard.ZstdError as exc:
            raise Corrupt(str(exc)) from exc

    def finish(self) -> Iterator[bytes]:
        if self._fed and not self._obj.eof:
            raise Corrupt("zstd stream ended early")
        yield from ()


def layers_for(content_encoding: str) -> list[Layer]:
    """Decoders for a Content-Encoding value, in decoding order (last applied first)."""
    names = [t.strip().lower() for t in content_encoding.split(",")]
    names = [n for n in names if n and n != "identity"]
    if len(names) > _MAX_ENCODING_LAYERS:
        raise ValueError(f"{len(names)} stacked content encodings")
    layers: list[Layer] = []
    for name in reversed(names):
        if name in ("gzip", "x-gzip", "deflate"):
            layers.append(_ZlibLayer(name))
        elif name == "br":
            layers.append(_BrotliLayer())
        elif name == "zstd":
            layers.append(_ZstdLayer())
        else:
            raise ValueError(f"unsupported content encoding {name!r}")
    return layers


@dataclass(slots=True)
class BodyDecoder:
    """Decodes a body chunk by chunk through every layer, counting output against a cap.

    Each intermediate layer also has a cap (a generous multiple of the final
    one), so a bomb hidden in an inner layer cannot burn unbounded CPU.
    """

    layers: list[Layer]
    max_bytes: int
    parts: list[bytes] = field(default_factory=list, init=False)
    size: int = field(default=0, init=False)
    # Output so far of each intermediate layer (the last one's is ``size``).
    layer_sizes: list[int] = field(init=False)
    inner_cap: int = field(init=False)

    def __post_init__(self) -> None:
        self.layer_sizes = [0] * len(self.layers)
        self.inner_cap = 4 * self.max_bytes + 1024 * 1024

    def _through(self, index: int, pieces: Iterator[bytes]) -> None:
        if index == len(self.layers) - 1:
            for piece in pieces:
                self._keep(piece)
            return
        for piece in pieces:
            self.layer_sizes[index] += len(piece)
            if self.layer_sizes[index] > self.inner_cap:
                raise Overflow
            self._through(index + 1, self.layers[index + 1].feed(piece))

    def _keep(self, piece: bytes) -> None:
        self.size += len(piece)
        if self.size > self.max_bytes:
            raise Overflow
        self.parts.append(piece)

    def feed(self, data: bytes) -> None:
        if not self.layers:
            self._keep(data)
        else:
            self._through(0, self.layers[0].feed(data))

    def finish(self) -> bytes:
        # Flush layer by layer: what a layer yields at the end goes through the next.
        for index, layer in enumerate(self.layers):
            self._through(index, layer.finish())
        return b"".join(self.parts)
