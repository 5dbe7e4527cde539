"""Reading a large request body fast, in chunks of two reused buffers, never more than a limit.

Under gunicorn (the web server of the demo, the image and compose.yaml) a body of declared length
is read with ``recv_into`` straight from the client's socket (``environ["gunicorn.socket"]``) into
two page-aligned buffers taken in turn, after the bytes gunicorn already read along with the
headers: its ``wsgi.input`` copies every chunk several times in Python (BytesIO buffers, slices),
which cost more CPU than hashing it. Each chunk fills its buffer (but for the body's end and the
``splits`` offsets, where the next chunk starts a buffer afresh), so a file store can write whole
aligned blocks past the page cache (releases/storage/filesystem.py). gunicorn's reader is then told
the body is consumed, so that keep-alive still finds the next request where it starts; a body left
part-read (the request refused midway) is handed back to gunicorn, which discards its rest or closes
the connection, never reading it as a request. Any other server, or a chunked body, is read through
``wsgi.input`` in large reads (PEP 3333's interface).
"""

from __future__ import annotations

import mmap
from collections.abc import Generator, Iterator, Sequence
from typing import Any

from gunicorn.http.body import Body, LengthReader

CHUNK = 4 * 1024 * 1024  # a multiple of any disk block (4 and 8 MiB measured alike in bench/uploads.py)


class BodyTooLarge(Exception):
    """The body ran past the limit (a chunked body has no declared length to refuse up front)."""


class BodyIncomplete(Exception):
    """The connection ended before the declared length arrived."""


def declared_length(environ: dict[str, Any]) -> int | None:
    """The body's Content-Length, or None for a body without one (chunked transfer encoding)."""
    value = environ.get("CONTENT_LENGTH") or ""
    if value:
        return int(value)  # slipway.limits.RequestSizeLimit refused anything but a number
    return None if environ.get("wsgi.input_terminated") else 0


def body_chunks(environ: dict[str, Any], limit: int,
                splits: Sequence[int] = ()) -> Generator[memoryview, None, None]:
    """The request body as views of two buffers taken in turn: a chunk stays as it is until the chunk
    after it has been handed over and the consumer asks for one more (so it may still be hashed and
    written on other threads while the next one is received). No chunk spans an offset in ``splits``.

    Raises BodyTooLarge past ``limit`` bytes (the caller refused a declared length over it before
    reading) and BodyIncomplete when the client stops short of its declared length."""
    length = declared_length(environ)
    if length is None:
        yield from _until_end(environ["wsgi.input"], limit, splits)
        return
    if length > limit:
        raise BodyTooLarge(length)
    socket, held = _gunicorn_socket(environ, length)
    if socket is None:
        yield from _from_stream(environ["wsgi.input"], length, splits)
        return
    buffers = [memoryview(mmap.mmap(-1, CHUNK)) for _ in range(2)]  # page-aligned, unlike a bytearray's
    received, receiving = 0, False
    try:
        while received < length:
            buffer = buffers[0]
            buffers.reverse()
            want = _next_size(received, splits, length - received)
            filled = min(len(held), want)
            buffer[:filled], held = held[:filled], held[filled:]
            receiving = True
            while filled < want:
                count = socket.recv_into(buffer[filled:want])
                if not count:
                    raise BodyIncomplete(f"the body ended after {received + filled} of {length} bytes")
                filled += count
            receiving = False
            received += filled
            yield buffer[:filled]
    finally:
        if received < length:
            _hand_back(environ["wsgi.input"], held, length - received, lost=receiving)


def _hand_back(body: Body, held: bytes, left: int, lost: bool) -> None:
    """The body is left part-read: gunicorn gets back what is left of it to discard (its keep-alive then
    finds the next request where it starts), or, where bytes were lost mid-read, closes the connection."""
    if lost:
        body.failed = True
        return
    reader = body.reader
    reader.unreader.unread(held)  # before a pipelined next request already given back
    reader.length = left


def _from_stream(stream: Any, length: int, splits: Sequence[int]) -> Iterator[memoryview]:
    received = 0
    while received < length:
        chunk = memoryview(stream.read(_next_size(received, splits, length - received)))
        if not chunk:
            raise BodyIncomplete(f"the body ended after {received} of {length} bytes")
        received += len(chunk)
        yield chunk


def _until_end(stream: Any, limit: int, splits: Sequence[int]) -> Iterator[memoryview]:
    received = 0
    while chunk := memoryview(stream.read(_next_size(received, splits, CHUNK))):
        received += len(chunk)
        if received > limit:
            raise BodyTooLarge(received)
        yield chunk


def _next_size(received: int, splits: Sequence[int], left: int) -> int:
    """How much to read next: a chunk, less where the body or the next offset in ``splits`` comes first."""
    return min(CHUNK, left, *(split - received for split in splits if split > received))


def _gunicorn_socket(environ: dict[str, Any], length: int) -> tuple[Any, bytes]:
    """gunicorn's client socket and the body bytes it already holds, once its reader has been told
    the body is consumed; (None, b"") under any other server (or a gunicorn without this interface)."""
    socket, body = environ.get("gunicorn.socket"), environ["wsgi.input"]
    reader = getattr(body, "reader", None)
    if (socket is None or not isinstance(body, Body) or not isinstance(reader, LengthReader)
            or reader.length != length or body.buf.tell() or not hasattr(reader.unreader, "take_buffered")):
        return None, b""
    held = reader.unreader.take_buffered()
    if len(held) > length:  # a pipelined next request: leave it to gunicorn
        reader.unreader.unread(held[length:])
        held = held[:length]
    reader.length = 0
    return socket, held
