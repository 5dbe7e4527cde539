"""Reading a request body in chunks: straight from gunicorn's socket (its own reader objects, over a socket
pair), through wsgi.input elsewhere, and a chunked body cut off at the limit."""

import io
import os
import socket
import threading

import pytest
from gunicorn.http.body import Body, ChunkedReader, LengthReader
from gunicorn.http.unreader import SocketUnreader

from releases.request_body import CHUNK, BodyIncomplete, BodyTooLarge, body_chunks

BODY = os.urandom(3 * CHUNK + 12345)
NEXT_REQUEST = b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n"


def received(environ: dict, limit: int = len(BODY)) -> bytes:
    return b"".join(bytes(chunk) for chunk in body_chunks(environ, limit))


@pytest.fixture
def connection():
    client, server = socket.socketpair()
    yield client, server
    client.close()
    server.close()


def send(client: socket.socket, data: bytes, *, then_close: bool = False) -> threading.Thread:
    """The client's side, in a thread: the socket's buffer is smaller than what it sends."""
    def run() -> None:
        client.sendall(data)
        if then_close:
            client.shutdown(socket.SHUT_WR)
    sender = threading.Thread(target=run, daemon=True)
    sender.start()
    return sender


def gunicorn_environ(server: socket.socket, held: bytes, length: int) -> dict:
    """What gunicorn hands the app: its Body over the socket, some body bytes already read with the headers."""
    unreader = SocketUnreader(server)
    unreader.unread(held)
    return {"CONTENT_LENGTH": str(length), "wsgi.input": Body(LengthReader(unreader, length)),
            "gunicorn.socket": server, "wsgi.input_terminated": True}


def test_under_gunicorn_the_body_comes_from_its_socket_and_the_next_request_stays(connection):
    client, server = connection
    environ = gunicorn_environ(server, BODY[:1000], len(BODY))
    send(client, BODY[1000:] + NEXT_REQUEST)
    assert received(environ) == BODY
    # gunicorn's reader knows the body is consumed; the pipelined next request is still there to parse.
    assert environ["wsgi.input"].read(10) == b""
    assert server.recv(len(NEXT_REQUEST)) == NEXT_REQUEST


def test_a_pipelined_request_read_along_with_the_body_goes_back_to_gunicorn(connection):
    _, server = connection
    environ = gunicorn_environ(server, BODY[:5000] + NEXT_REQUEST, 5000)
    assert received(environ) == BODY[:5000]
    assert environ["wsgi.input"].reader.unreader.read() == NEXT_REQUEST


def test_a_client_that_stops_short_is_an_incomplete_body(connection):
    client, server = connection
    environ = gunicorn_environ(server, b"", len(BODY))
    send(client, BODY[:CHUNK], then_close=True)
    with pytest.raises(BodyIncomplete, match=f"the body ended after {CHUNK} of {len(BODY)} bytes"):
        received(environ)


def test_other_servers_are_read_through_wsgi_input():
    environ = {"CONTENT_LENGTH": str(len(BODY)), "wsgi.input": io.BytesIO(BODY + b"more than declared")}
    assert received(environ) == BODY
    with pytest.raises(BodyTooLarge):
        received(environ, limit=len(BODY) - 1)


def test_a_chunked_body_is_cut_off_at_the_limit(connection):
    client, server = connection
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (BODY[:CHUNK], BODY[CHUNK:])) + b"0\r\n\r\n"
    send(client, chunked)
    environ = {"wsgi.input": Body(ChunkedReader({}, SocketUnreader(server))), "wsgi.input_terminated": True}
    chunks = body_chunks(environ, limit=CHUNK + 10)
    assert bytes(next(chunks)) == BODY[:CHUNK]
    with pytest.raises(BodyTooLarge):
        next(chunks)


def test_no_chunk_spans_a_split_and_each_fills_its_buffer(connection):
    """The bytes gunicorn read with the headers run past the splits: its chunks end there all the same,
    and the chunks after them start their buffers afresh, whole (a file store writes them past the page cache)."""
    client, server = connection
    splits = (1000, 3000)
    environ = gunicorn_environ(server, BODY[:5000], len(BODY))
    send(client, BODY[5000:])
    sizes, data = [], b""
    for chunk in body_chunks(environ, len(BODY), splits=splits):
        sizes.append(len(chunk))
        data += bytes(chunk)
    assert data == BODY
    assert sizes == [1000, 2000, CHUNK, CHUNK, CHUNK, len(BODY) - 3000 - 3 * CHUNK]


def test_a_body_left_part_read_goes_back_to_gunicorn_to_discard(connection):
    """The request is refused after its first chunk (its metadata): gunicorn gets the rest of the body to
    discard, then finds the pipelined next request where it starts, never the body's bytes as a request."""
    client, server = connection
    environ = gunicorn_environ(server, BODY[:5000], len(BODY))
    send(client, BODY[5000:] + NEXT_REQUEST)
    chunks = body_chunks(environ, len(BODY), splits=(1000,))
    assert bytes(next(chunks)) == BODY[:1000]
    chunks.close()
    body = environ["wsgi.input"]
    assert (body.reader.length, body.failed) == (len(BODY) - 1000, False)
    left = b""
    while part := body.read(65536):
        left += part
    assert left == BODY[1000:]
    assert server.recv(len(NEXT_REQUEST)) == NEXT_REQUEST


def test_a_body_cut_off_mid_read_closes_the_connection(connection):
    """Bytes taken off the socket were lost: where the next request starts is unknown, so gunicorn must close."""
    client, server = connection
    environ = gunicorn_environ(server, b"", len(BODY))
    send(client, BODY[:CHUNK + 10], then_close=True)
    chunks = body_chunks(environ, len(BODY))
    next(chunks)
    with pytest.raises(BodyIncomplete):
        next(chunks)
    assert environ["wsgi.input"].failed is True


def test_a_chunk_stays_as_it_is_while_the_next_is_received(connection):
    """Double buffering: chunk n is overwritten only once chunk n + 1 was handed over and one more is asked for."""
    client, server = connection
    environ = gunicorn_environ(server, b"", len(BODY))
    send(client, BODY)
    chunks = body_chunks(environ, len(BODY))
    first, second = next(chunks), next(chunks)
    assert (bytes(first), bytes(second)) == (BODY[:CHUNK], BODY[CHUNK:2 * CHUNK])
    third = next(chunks)
    assert bytes(second) == BODY[CHUNK:2 * CHUNK]
    assert bytes(first) == bytes(third) == BODY[2 * CHUNK:3 * CHUNK]  # the first one's buffer, reused


def test_other_servers_split_too():
    environ = {"CONTENT_LENGTH": str(len(BODY)), "wsgi.input": io.BytesIO(BODY)}
    assert [len(chunk) for chunk in body_chunks(environ, len(BODY), splits=(10, 20))][:3] == [10, 10, CHUNK]
