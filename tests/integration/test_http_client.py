"""The one HTTP path every notifier takes (app/notifiers/http.py), against real local servers.

What the issue asks of every outbound call and a notifier test cannot see
from the stored outcome: at most 64 KiB of an answer is read, no redirect is
followed, the proxy variables of the environment are ignored, and a proxy
that is configured is used.
"""

import asyncio
import gzip
import json
import socketserver
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from app.notifiers.base import DeliveryError
from app.notifiers.http import MAX_RESPONSE_BYTES, make_client, post, raise_for_status
from tests.helpers import T0
from tests.sinks import Reply, WebhookSink, serve, serve_app

CHUNK = 16 * 1024
TOTAL_CHUNKS = 50 * 1024 * 1024 // CHUNK  # a 50 MB answer


class HugeAnswer:
    """Answers every POST with 50 MB, streamed, and counts what it got to send."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.yielded = 0
        self.completed = False  # the whole body went out
        self.stopped = threading.Event()  # the body generator ended, either way
        self.app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["POST"])])

    async def _handle(self, request: Request) -> Response:
        await request.body()

        async def body() -> AsyncIterator[bytes]:
            try:
                for i in range(TOTAL_CHUNKS):
                    with self.lock:
                        self.yielded += 1
                    yield bytes([65 + i % 26]) * CHUNK
                    await asyncio.sleep(0)
                self.completed = True
            finally:
                self.stopped.set()

        return StreamingResponse(body(), media_type="application/octet-stream")


async def test_reads_at_most_64_kib_and_hangs_up_on_a_huge_answer() -> None:
    huge = HugeAnswer()
    with serve_app(huge.app) as url:
        client = make_client()
        try:
            started = time.monotonic()
            async with asyncio.timeout(10):
                reply = await post(client, f"{url}/hook", what="test", json_body={"a": 1})
            elapsed = time.monotonic() - started
            # The client hung up: the server's body generator is cancelled, not run out.
            assert await asyncio.to_thread(huge.stopped.wait, 10), "the server is still sending"
        finally:
            await client.aclose()
    assert reply.status == 200
    assert len(reply.body) == MAX_RESPONSE_BYTES
    assert reply.body == b"A" * CHUNK + b"B" * CHUNK + b"C" * CHUNK + b"D" * CHUNK
    assert elapsed < 2.0, elapsed
    assert not huge.completed
    # What the socket buffers took before the hang-up, at most: far from 50 MB.
    assert huge.yielded < TOTAL_CHUNKS // 5, f"{huge.yielded} of {TOTAL_CHUNKS} chunks sent"


async def test_a_compressed_answer_is_not_asked_for() -> None:
    """The cap counts the bytes on the wire, which are the body only when nothing
    is compressed; and notifiers read the answer as JSON or text. Asking for no
    encoding keeps both true (a gzipped answer came back as undecodable bytes)."""
    seen: list[str] = []
    data = {"status": "invalid event", "message": "Event object is invalid", "errors": ["x" * 2000]}

    async def handle(request: Request) -> Response:
        accept = request.headers.get("accept-encoding", "")
        seen.append(accept)
        raw = json.dumps(data).encode()
        if "gzip" in accept:  # as any CDN in front of a SaaS API does
            return Response(
                gzip.compress(raw),
                400,
                headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
            )
        return Response(raw, 400, media_type="application/json")

    with serve_app(Starlette(routes=[Route("/x", handle, methods=["POST"])])) as url:
        client = make_client()
        try:
            reply = await post(client, f"{url}/x", what="test", json_body={})
        finally:
            await client.aclose()
    assert reply.json() == data, reply.body[:40]
    assert len(seen) == 1 and "gzip" not in seen[0] and "deflate" not in seen[0], seen


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirects_are_not_followed(status: int) -> None:
    """Redirects: the Location target never hears from us, and the 3xx is a dead end."""
    sink, target = WebhookSink(), WebhookSink()
    with serve(target) as target_url, serve(sink) as sink_url:
        sink.script(Reply(status, "", headers={"Location": f"{target_url}/stolen"}))
        client = make_client()
        try:
            reply = await post(
                client, f"{sink_url}/hook", what="test", json_body={"secret": "s3cr3t"}
            )
        finally:
            await client.aclose()
        await asyncio.sleep(0.2)  # a follow-up request would have arrived by now
    assert reply.status == status and len(sink.requests()) == 1
    assert target.requests() == []
    with pytest.raises(DeliveryError) as err:
        raise_for_status(reply, T0, what="test", secrets=[])
    assert not err.value.retryable and "redirects are not followed" in err.value.message


class FakeProxy(socketserver.ThreadingTCPServer):
    """A forward proxy that records each request line and answers it itself."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.connections = 0
        super().__init__(("127.0.0.1", 0), _ProxyHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(socketserver.StreamRequestHandler):
    server: FakeProxy

    def handle(self) -> None:
        self.server.connections += 1
        line = self.rfile.readline().decode("latin-1").rstrip("\r\n")
        if not line:
            return
        self.server.lines.append(line)
        length = 0
        while (header := self.rfile.readline().decode("latin-1").rstrip("\r\n")) != "":
            name, _, value = header.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        self.rfile.read(length)
        self.wfile.write(
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\nvia-proxy"
        )


@contextmanager
def fake_proxy() -> Iterator[FakeProxy]:
    proxy = FakeProxy()
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join(timeout=10)


PROXY_VARS = ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"]


async def test_proxy_variables_of_the_environment_are_ignored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HTTP(S)_PROXY/ALL_PROXY must not send alerts (and their URLs) elsewhere."""
    sink = WebhookSink()
    with fake_proxy() as proxy, serve(sink) as sink_url:
        for var in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(var, raising=False)
        for var in PROXY_VARS:
            monkeypatch.setenv(var, proxy.url)
        # The trap is set: a client that trusts the environment walks into it.
        async with httpx.AsyncClient(trust_env=True) as trusting:
            assert (await trusting.post(f"{sink_url}/control")).text == "via-proxy"
        assert len(proxy.lines) == 1 and sink.requests() == []

        client = make_client()
        try:
            reply = await post(client, f"{sink_url}/hook", what="test", json_body={"a": 1})
        finally:
            await client.aclose()
    assert reply.status == 200 and reply.body == b"ok"
    assert [r.path for r in sink.requests()] == ["/hook"]
    assert len(proxy.lines) == 1 and proxy.connections == 1  # still only the control's


async def test_a_configured_proxy_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    sink = WebhookSink()
    with fake_proxy() as proxy, serve(sink) as sink_url:
        for var in PROXY_VARS:
            monkeypatch.delenv(var, raising=False)
        client = make_client(proxy=proxy.url)
        try:
            reply = await post(client, f"{sink_url}/hook", what="test", json_body={"a": 1})
        finally:
            await client.aclose()
    assert reply.status == 200 and reply.body == b"via-proxy"
    assert proxy.lines == [f"POST {sink_url}/hook HTTP/1.1"]  # absolute form: a forward proxy's
    assert sink.requests() == []


@pytest.mark.parametrize(
    "token",
    ["t\u00f6ken", "token\r\nX-Injected: 1", "token\n"],
    ids=["not-ascii", "crlf", "newline"],
)
async def test_a_request_that_cannot_be_sent_is_dead_at_once_and_sends_nothing(token: str) -> None:
    """A credential httpx cannot put in a header: retrying never helps, so not retryable."""
    sink = WebhookSink()
    with serve(sink) as url:
        async with make_client() as client:
            with pytest.raises(DeliveryError) as info:
                await post(
                    client,
                    f"{url}/hook",
                    what="webhook",
                    json_body={"a": 1},
                    headers={"Authorization": f"Bearer {token}"},
                )
    assert info.value.retryable is False
    assert token.strip() not in info.value.message
    assert sink.requests() == []
