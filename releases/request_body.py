"""Reading a large request body fast, in chunks of a reused buffer, never more than a limit.

Under gunicorn (the web server of the demo, the image and compose.yaml) a body of declared length
is read with ``recv_into`` straight from the client's socket (``environ["gunicorn.socket"]``) into
one buffer, after the bytes gunicorn already read along with the headers: its ``wsgi.input``
copies every chunk several times in Python (BytesIO buffers, slices), which cost more CPU than
hashing it. gunicorn's reader is then told the body is consumed, so that keep-alive still finds
the next request where it starts. Any other server, or a chunked body, is read through
``wsgi.input`` in large reads (PEP 3333's interface).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from gunicorn.http.body import Body, LengthReader

CHUNK = 1024 * 1024


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


def body_chunks(environ: dict[str, Any], limit: int) -> Iterator[memoryview]:
    """The request body as views of one reused buffer (use each before asking for the next).

    Raises BodyTooLarge past ``limit`` bytes (the caller refused a declared length over it before
    reading) and BodyIncomplete when the client stops short of its declared length."""
    length = declared_length(environ)
    if length is None:
        yield from _until_end(environ["wsgi.input"], limit)
        return
    if length > limit:
        raise BodyTooLarge(length)
    socket, held = _gunicorn_socket(environ, length)
    if held:
        yield memoryview(held)
    buffer = memoryview(bytearray(CHUNK if socket is not None else 0))
    received, stream = len(held), environ["wsgi.input"]
    while received < length:
        want = min(CHUNK, length - received)
        chunk = buffer[:socket.recv_into(buffer, want)] if socket is not None else memoryview(stream.read(want))
        if not chunk:
            raise BodyIncomplete(f"the body ended after {received} of {length} bytes")
        received += len(chunk)
        yield chunk


def _until_end(stream: Any, limit: int) -> Iterator[memoryview]:
    received = 0
    while chunk := memoryview(stream.read(CHUNK)):
        received += len(chunk)
        if received > limit:
            raise BodyTooLarge(received)
        yield chunk


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
