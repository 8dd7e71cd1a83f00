"""Load tools of the model-server benchmarks: the raw-asyncio floor, an open-loop client, and
a closed-loop saturation client. Loopback only; every loop is bounded in count and time.

* ``python -m ultrathink.perf.bench_serving floor PORT BODY_FILE``: the reference server, a
  minimal asyncio protocol on uvloop that answers every request with the bytes of
  ``BODY_FILE`` (the JSON of a real cache hit), parsing no more than the framing needs.
* ``python -m ultrathink.perf.bench_serving asgi PORT BODY_FILE``: the same answer from a bare
  ASGI app on uvicorn (httptools, uvloop), the stack the issue suggested, for the record.
* ``open_loop``: one keep-alive client sending at a fixed rate; each latency is measured from
  the request's intended send time, so a stall delays every request behind it and shows up
  in the percentiles (no coordinated omission).
* ``saturate``: C client processes, each a closed loop on its own keep-alive connection, for
  a fixed time; the total answered per second.
"""

from __future__ import annotations

import asyncio
import http.client
import multiprocessing as mp
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["open_loop", "saturate"]

_HEADERS = {"content-type": "application/json"}


def open_loop(
    port: int, path: str, bodies: Sequence[bytes], rate_per_s: float, warmup: int = 500
) -> np.ndarray:
    """Send ``bodies`` in order at ``rate_per_s``; latencies in µs from each intended send."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for i in range(warmup):
        conn.request("POST", path, bodies[i % len(bodies)], _HEADERS)
        conn.getresponse().read()
    lat = np.empty(len(bodies))
    interval = 1.0 / rate_per_s
    t0 = time.perf_counter()
    for i, body in enumerate(bodies):
        intended = t0 + i * interval
        while time.perf_counter() < intended:
            pass
        conn.request("POST", path, body, _HEADERS)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"request {i} answered {response.status}")
        lat[i] = (time.perf_counter() - intended) * 1e6
    conn.close()
    return lat


def _closed_loop(port: int, path: str, body: bytes, seconds: float, out: mp.Queue) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    n = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        conn.request("POST", path, body, _HEADERS)
        conn.getresponse().read()
        n += 1
    out.put(n)


def saturate(port: int, path: str, body: bytes, clients: int, seconds: float) -> float:
    """Requests per second answered to ``clients`` closed-loop client processes."""
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()
    procs = [
        ctx.Process(target=_closed_loop, args=(port, path, body, seconds, out))
        for _ in range(clients)
    ]
    for p in procs:
        p.start()
    total = sum(out.get(timeout=seconds + 120) for _ in procs)
    for p in procs:
        p.join()
    return total / seconds


def _floor(port: int, body: bytes) -> None:
    import uvloop

    response = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
        % (len(body), body)
    )

    class Floor(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.buf = b""

        def data_received(self, data: bytes) -> None:
            self.buf += data
            while True:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = self.buf[:end].lower()
                at = head.find(b"content-length:")
                length = int(head[at + 15 :].split(b"\r\n", 1)[0]) if at >= 0 else 0
                if len(self.buf) < end + 4 + length:
                    return
                self.buf = self.buf[end + 4 + length :]
                self.transport.write(response)  # type: ignore[attr-defined]

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Floor, "127.0.0.1", port)
        print(f"ready {server.sockets[0].getsockname()[1]}", flush=True)
        await server.serve_forever()

    uvloop.run(main())


def _asgi(port: int, body: bytes) -> None:
    import uvicorn

    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]

    async def app(scope: dict, receive: object, send: object) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:
            message = await receive()  # type: ignore[operator]
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": headers})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": body})  # type: ignore[operator]

    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    print(f"ready {sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(
        app, loop="uvloop", http="httptools", log_level="warning", access_log=False,
        lifespan="off",
    )  # fmt: skip
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    kind, port_text, body_file = sys.argv[1:4]
    {"floor": _floor, "asgi": _asgi}[kind](int(port_text), Path(body_file).read_bytes())
