"""A small asyncio HTTP/1.1 client with keep-alive, for the load generator.

The benchmark must not be limited by its own client, and it must see every
failure as it happens (a reset connection is an error here, not something
to retry quietly), so it speaks HTTP directly: one request at a time per
connection, connections reused, ``Content-Length`` or chunked bodies.
Standard library only.
"""

import asyncio
import json
import time


class HTTPError(Exception):
    """The connection failed before a whole response arrived."""


class Response:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body) if self.body else None


async def read_head(reader):
    """``(start line, {lower-case name: value})`` of the next message, or None at EOF."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            return None
        raise HTTPError("connection closed inside a message head") from None
    except asyncio.LimitOverrunError:
        raise HTTPError("message head too large") from None
    lines = raw[:-4].decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return lines[0], headers


async def read_body(reader, headers, no_body=False):
    """The body of a message whose head was ``headers`` (raw bytes, de-chunked)."""
    if no_body:
        return b""
    try:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            chunks = []
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(await reader.readexactly(size))
                await reader.readexactly(2)
        length = headers.get("content-length")
        if length is not None:
            return await reader.readexactly(int(length))
        return await reader.read()  # until close
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
        raise HTTPError("bad or truncated body: {}".format(e.__class__.__name__)) from None


class Client:
    """Keep-alive connections to one ``host:port``, at most ``size`` at once."""

    def __init__(self, host, port, size=8, timeout=120.0, headers=None):
        self.host = host
        self.port = port
        self.timeout = timeout
        self.base_headers = dict(headers or {})
        self._idle = []
        self._slots = asyncio.Semaphore(size)
        #: requests sent again because a kept-alive connection had been closed
        self.stale_retries = 0

    async def _connect(self):
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        return reader, writer

    async def request(self, method, path, body=None, headers=None):
        """One request; raises :class:`HTTPError` (or OSError) when the connection fails."""
        async with self._slots:
            return await asyncio.wait_for(self._request(method, path, body, headers), self.timeout)

    async def _request(self, method, path, body, headers):
        if body is not None and not isinstance(body, (bytes, bytearray)):
            body = json.dumps(body).encode()
        lines = ["{} {} HTTP/1.1".format(method, path), "Host: {}:{}".format(self.host, self.port)]
        merged = dict(self.base_headers)
        merged.update(headers or {})
        if body is not None:
            merged.setdefault("Content-Type", "application/json")
            merged["Content-Length"] = str(len(body))
        elif method in ("POST", "PUT", "PATCH"):
            merged["Content-Length"] = "0"
        lines += ["{}: {}".format(k, v) for k, v in merged.items()]
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
        # A reused connection may have been closed by the server while idle:
        # only then is a request sent again on a new connection.
        while True:
            reused = bool(self._idle)
            conn = self._idle.pop() if reused else await self._connect()
            reader, writer = conn
            try:
                writer.write(data)
                await writer.drain()
                head = await read_head(reader)
                if head is None:
                    raise HTTPError("connection closed before the response")
                status_line, rheaders = head
                status = int(status_line.split(" ", 2)[1])
                rbody = await read_body(reader, rheaders, no_body=method == "HEAD" or status in (204, 304))
            except (HTTPError, OSError) as e:
                writer.close()
                stale = reused and (
                    isinstance(e, (ConnectionResetError, BrokenPipeError))
                    or (isinstance(e, HTTPError) and "before the response" in str(e))
                )
                if stale:
                    # closed by the server while idle: the request never reached it
                    self.stale_retries += 1
                    continue
                if isinstance(e, HTTPError):
                    raise
                raise HTTPError("{}: {}".format(e.__class__.__name__, e)) from None
            except BaseException:
                writer.close()
                raise
            if rheaders.get("connection", "").lower() == "close":
                writer.close()
            else:
                self._idle.append(conn)
            return Response(status, rheaders, rbody)

    async def close(self):
        idle, self._idle = self._idle, []
        for _reader, writer in idle:
            writer.close()


async def bounded(items, concurrency, worker, on_done=None):
    """Run ``await worker(item)`` for every item, ``concurrency`` at once; results in order."""
    results = [None] * len(items)
    queue = list(enumerate(items))
    queue.reverse()

    async def lane():
        while queue:
            index, item = queue.pop()
            results[index] = await worker(item)
            if on_done is not None:
                on_done(index, results[index])

    await asyncio.gather(*(lane() for _ in range(max(1, min(concurrency, len(items))))))
    return results


def now():
    return time.time()
