"""The hot-path HTTP/1.1 client against raw servers: framing variants, stale keep-alive connections, timeouts."""

from __future__ import annotations

import asyncio

import pytest

from services.gateway.proxy import LeanPool, UpstreamError


async def raw_server(answers: list[bytes], close_after_each: bool = False, delay: float = 0.0):
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while answers:
            head = await reader.readuntil(b"\r\n\r\n")
            if b"Content-Length:" in head:
                length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
            await asyncio.sleep(delay)
            writer.write(answers.pop(0))
            await writer.drain()
            if close_after_each:
                break
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def pool(port: int, read_timeout: float = 2.0) -> LeanPool:
    return LeanPool("127.0.0.1", port, connect_timeout=1.0, read_timeout=read_timeout)


async def test_content_length_and_chunked_answers_are_read_whole_on_one_connection():
    server, port = await raw_server([
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}",
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"b\r\n4\r\n\":2}\r\n0\r\n\r\n",
    ])
    p = pool(port)
    status, headers, body = await p.request("GET", "/x", {"Accept": "*/*"}, None)
    assert (status, body) == (200, b'{"a":1}') and ("Content-Type", "application/json") in headers
    status, _, body = await p.request("POST", "/y", {}, b'{"z":1}')
    assert (status, body) == (201, b'{"b":2}')
    p.close()
    server.close()


async def test_an_answer_delimited_by_close_is_read_to_the_end():
    server, port = await raw_server([b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it"], close_after_each=True)
    status, _, body = await pool(port).request("GET", "/x", {}, None)
    assert (status, body) == (200, b"all of it")
    server.close()


async def test_a_stale_kept_alive_connection_is_retried_once_for_a_get():
    server, port = await raw_server([b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                                     b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"], close_after_each=True)
    p = pool(port)
    assert (await p.request("GET", "/x", {}, None))[0] == 200
    await asyncio.sleep(0.05)  # the server closed that connection; the pool may still hold it
    assert (await p.request("GET", "/x", {}, None))[0] == 200
    server.close()


async def test_a_slow_service_is_a_504_and_a_closed_port_a_503():
    server, port = await raw_server([b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"], delay=1.0)
    with pytest.raises(UpstreamError) as slow:
        await pool(port, read_timeout=0.2).request("GET", "/x", {}, None)
    assert slow.value.status == 504
    server.close()
    await server.wait_closed()
    with pytest.raises(UpstreamError) as down:
        await pool(port).request("GET", "/x", {}, None)
    assert down.value.status == 503


async def test_a_garbled_answer_is_a_502():
    server, port = await raw_server([b"HTTP/1.1 abc\r\n\r\n"])
    with pytest.raises(UpstreamError) as bad:
        await pool(port).request("GET", "/x", {}, None)
    assert bad.value.status == 502
    server.close()
