"""A counting reverse proxy in front of Ironic (asyncio, standard library only).

Every request a service makes to Ironic goes through it, so the benchmark
can tell how many Ironic API calls each introspected node cost, which ones,
how long Ironic took for them, and how many failed or had their connection
reset.  It forwards one request at a time per client connection over its
own upstream connection (like a keep-alive client would), bytes unchanged.

Control endpoints, answered by the proxy itself::

    GET  /__bench__/stats    counters since the last reset, as JSON
    POST /__bench__/reset    the same, then zero them

Run: ``python -m bench.proxy --listen-port P --upstream 127.0.0.1:6385``
(prints ``ready`` on stdout once listening).
"""

import argparse
import asyncio
import json
import re
import sys
import time

from bench.httpc import HTTPError, read_body, read_head

_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
_ID_AFTER = {"nodes": "{node}", "ports": "{port}", "portgroups": "{portgroup}", "traits": "{trait}"}


def template(path):
    """``PATCH /v1/nodes/<uuid>`` -> ``/v1/nodes/{node}``; query values dropped, names kept."""
    path, _, query = path.partition("?")
    parts = path.split("/")
    for i in range(1, len(parts)):
        if parts[i - 1] in _ID_AFTER and parts[i] and not parts[i].startswith("detail"):
            parts[i] = _ID_AFTER[parts[i - 1]]
        elif _UUID.match(parts[i]):
            parts[i] = "{uuid}"
    path = "/".join(parts)
    if query:
        names = sorted({item.partition("=")[0] for item in query.split("&") if item})
        path += "?" + "&".join(names)
    return path


class Stats:
    def __init__(self):
        self.reset()

    def reset(self):
        self.since = time.time()
        self.calls = {}  # "METHOD /template" -> count
        self.answered = {}  # "METHOD /template" -> responses received from Ironic
        self.seconds = {}  # "METHOD /template" -> upstream seconds, summed
        self.statuses = {}  # "200" -> count
        self.failed = {}  # "METHOD /template" -> responses >= 400
        self.resets = 0  # upstream connection lost before a response
        self.in_flight = 0
        self.peak_in_flight = 0

    def snapshot(self):
        return {
            "since": self.since,
            "until": time.time(),
            "total": sum(self.calls.values()),
            "calls": dict(sorted(self.calls.items())),
            "answered": dict(sorted(self.answered.items())),
            "seconds": {k: round(v, 4) for k, v in sorted(self.seconds.items())},
            "statuses": dict(sorted(self.statuses.items())),
            "failed": dict(sorted(self.failed.items())),
            "resets": self.resets,
            "peak_in_flight": self.peak_in_flight,
        }


class Proxy:
    def __init__(self, upstream_host, upstream_port):
        self.upstream = (upstream_host, upstream_port)
        self.stats = Stats()

    async def handle(self, reader, writer):
        upstream = None
        try:
            while True:
                head = await read_head(reader)
                if head is None:
                    return
                request_line, headers = head
                body = await read_body(reader, headers, no_body="content-length" not in headers
                                       and "transfer-encoding" not in headers)
                method, target, _version = request_line.split(" ", 2)
                if target.startswith("/__bench__/"):
                    self._control(method, target, writer)
                    await writer.drain()
                    continue
                key = "{} {}".format(method, template(target))
                upstream, keep = await self._forward(upstream, method, key, request_line, headers, body, writer)
                if not keep:
                    return
        except (HTTPError, OSError, ValueError):
            return
        finally:
            writer.close()
            if upstream is not None:
                upstream[1].close()

    def _control(self, method, target, writer):
        snapshot = self.stats.snapshot()
        if target.startswith("/__bench__/reset") and method == "POST":
            self.stats.reset()
        payload = json.dumps(snapshot).encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(payload)).encode()
            + b"\r\n\r\n"
            + payload
        )

    async def _forward(self, upstream, method, key, request_line, headers, body, writer):
        stats = self.stats
        stats.calls[key] = stats.calls.get(key, 0) + 1
        stats.in_flight += 1
        stats.peak_in_flight = max(stats.peak_in_flight, stats.in_flight)
        # Re-frame the body with Content-Length: what was received is forwarded as is.
        out_headers = {k: v for k, v in headers.items() if k not in ("transfer-encoding", "content-length")}
        if body or method in ("POST", "PUT", "PATCH"):
            out_headers["content-length"] = str(len(body))
        data = (
            (request_line + "\r\n" + "".join("{}: {}\r\n".format(k, v) for k, v in out_headers.items()) + "\r\n")
            .encode("latin-1")
            + body
        )
        started = time.monotonic()
        try:
            if upstream is not None and (upstream[0].at_eof() or upstream[0].exception() is not None):
                # Ironic closed the kept-alive connection while it was idle
                upstream[1].close()
                upstream = None
            if upstream is None:
                upstream = await asyncio.open_connection(*self.upstream, limit=1 << 20)
            up_reader, up_writer = upstream
            up_writer.write(data)
            await up_writer.drain()
            head = await read_head(up_reader)
            if head is None:
                raise HTTPError("closed before the response")
            status_line, rheaders = head
            status = int(status_line.split(" ", 2)[1])
            rbody = await read_body(up_reader, rheaders, no_body=method == "HEAD" or status in (204, 304))
        except (HTTPError, OSError):
            stats.resets += 1
            stats.in_flight -= 1
            if upstream is not None:
                upstream[1].close()
            return None, False
        stats.in_flight -= 1
        stats.answered[key] = stats.answered.get(key, 0) + 1
        stats.seconds[key] = stats.seconds.get(key, 0.0) + time.monotonic() - started
        stats.statuses[str(status)] = stats.statuses.get(str(status), 0) + 1
        if status >= 400:
            stats.failed[key] = stats.failed.get(key, 0) + 1
        keep = rheaders.get("connection", "").lower() != "close" and headers.get("connection", "").lower() != "close"
        out = {k: v for k, v in rheaders.items() if k not in ("transfer-encoding", "content-length", "connection")}
        if not (method == "HEAD" or status in (204, 304)):
            out["content-length"] = str(len(rbody))
        if not keep:
            out["connection"] = "close"
        writer.write(
            (status_line + "\r\n" + "".join("{}: {}\r\n".format(k, v) for k, v in out.items()) + "\r\n").encode(
                "latin-1"
            )
            + rbody
        )
        await writer.drain()
        if not keep:
            upstream[1].close()
            upstream = None
        return upstream, keep


async def serve(host, port, upstream_host, upstream_port):
    proxy = Proxy(upstream_host, upstream_port)
    server = await asyncio.start_server(proxy.handle, host, port, limit=1 << 20, backlog=512)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.proxy", description=__doc__.splitlines()[0])
    parser.add_argument("--listen-host", default="127.0.0.1")
    parser.add_argument("--listen-port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="HOST:PORT of Ironic")
    args = parser.parse_args(argv)
    host, _, port = args.upstream.rpartition(":")
    try:
        asyncio.run(serve(args.listen_host, args.listen_port, host, int(port)))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
