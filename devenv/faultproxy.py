"""An HTTP proxy in front of a real Ironic that can hold requests (integration tests).

Blocking, standard library only, one thread per request.  A rule selects
requests by method and a path regular expression and holds each either
*before* passing it on (Ironic never sees it) or *after* (Ironic acts, the
answer is held), until :meth:`FaultProxy.release` or for a fixed delay.
Each held request is counted, so a test can wait until inspectord is
stuck exactly where it wants it.
"""

import http.client
import http.server
import re
import socket
import threading
import urllib.parse


class Rule:
    def __init__(self, method, path, when="before", delay=None, times=None):
        self.method = method
        self.path = re.compile(path)
        self.when = when
        self.delay = delay
        self.times = times
        self.released = threading.Event()
        self.dropped = False
        self.matched = 0
        #: Requests held so far (counted once held: for ``after``, once Ironic answered).
        self.held = 0

    def matches(self, method, path):
        if self.times is not None and self.matched >= self.times:
            return False
        return self.method in ("*", method) and self.path.search(path) is not None


class FaultProxy:
    """``http://127.0.0.1:<port>`` forwarding to ``upstream``; see the module docstring."""

    def __init__(self, upstream):
        parts = urllib.parse.urlsplit(upstream)
        self._upstream = (parts.hostname, parts.port or 80)
        self._rules = []
        self._lock = threading.Lock()
        self._down = False
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _any(self):
                proxy._handle(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _any

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = "http://127.0.0.1:{}".format(self.port)
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self.release_all()
        self._server.shutdown()
        self._server.server_close()

    def go_down(self):
        """Ironic becomes unreachable: new connections are refused, open ones closed at their next request."""
        self._down = True
        self._server.shutdown()
        self._server.server_close()

    def hold(self, method, path, when="before", delay=None, times=None):
        """Hold matching requests (until released, or ``delay`` seconds); the rule.  ``method`` "*": any."""
        rule = Rule(method, path, when, delay, times)
        with self._lock:
            self._rules.append(rule)
        return rule

    def release(self, rule, drop=False):
        """Let held requests go on; with ``drop``, close them instead (nothing reaches Ironic)."""
        rule.dropped = drop
        with self._lock:
            if rule in self._rules:
                self._rules.remove(rule)
        rule.released.set()

    def release_all(self):
        with self._lock:
            rules, self._rules = self._rules, []
        for rule in rules:
            rule.released.set()

    def _match(self, method, path):
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, path):
                    rule.matched += 1
                    return rule
        return None

    def _wait(self, rule):
        with self._lock:
            rule.held += 1
        rule.released.wait(rule.delay)

    def _handle(self, handler):
        if self._down:
            handler.close_connection = True
            return
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        rule = self._match(handler.command, handler.path)
        if rule is not None and rule.when == "before":
            self._wait(rule)
            if rule.dropped:
                handler.close_connection = True
                return
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in ("host", "connection")}
        try:
            upstream = http.client.HTTPConnection(*self._upstream, timeout=120)
            upstream.request(handler.command, handler.path, body=body, headers=headers)
            response = upstream.getresponse()
            payload = response.read()
            upstream.close()
        except OSError:
            handler.send_error(502)
            return
        if rule is not None and rule.when == "after":
            self._wait(rule)
        try:
            handler.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in ("connection", "transfer-encoding", "content-length"):
                    handler.send_header(key, value)
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            pass
