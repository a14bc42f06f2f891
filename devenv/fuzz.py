"""Hostile HTTP requests for inspectord, generated from its OpenAPI document (hypothesis).

:func:`requests` draws whole requests (method, path, query, headers, body)
for every operation of ``GET /v1/openapi.json``: well-formed ones built from
the document's schemas, mixed with malformed, oversized, nested and
non-JSON ones.  :func:`send` writes a request on a raw socket (so that any
byte can go anywhere) and reads the answer; :func:`problems` says what is
wrong with an answer (a 5xx, a non-JSON error, too slow).  Test tooling:
the standard library and hypothesis only.
"""

import base64
import http.client
import json
import socket
import time
import urllib.parse

from hypothesis import strategies as st

SLOW = 5.0
"""Seconds; any slower answer is a problem."""

HOSTILE_BODIES = (
    b"",
    b"null",
    b"[]",
    b'"text"',
    b"NaN",
    b'{"x": Infinity}',
    b'{"x": 1e400}',
    b"[" * 10000 + b"]" * 10000,
    b'{"a":' * 5000 + b"1" + b"}" * 5000,
    b'{"description": "\\ud800"}',
    b"\xff\xfe\x00",
    b'{"inventory": {"interfaces": "x"}}',
    b'{"inventory": {"memory": {"physical_mb": 1e30}, "interfaces": []}}',
    b'{"root_disk": "sda", "inventory": {"interfaces": []}}',
    b"9" * 5000,
    b'{"a": 1, "a": 2}',
)

HOSTILE_HEADER_VALUES = (b"1.\xff", b"\xff\xfe", b"1." + b"9" * 5000, b"9" * 5000 + b".1", b"\xd9\xa1.\xd9\xa2")

HOSTILE_TEXT = ("", " ", "..", "%", "%ff%fe", "\x00", "\u202e", "\ud7ff", "a" * 300, "1." + "9" * 400, "latest", "1.18")

_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    _json_leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


def from_schema(schema, macs=(), depth=0):
    """A strategy for values of a (small) JSON schema, sometimes off-schema on purpose."""
    if depth > 6:
        return json_values
    if "enum" in schema:
        return st.one_of(st.sampled_from(schema["enum"]), st.text(max_size=10))
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of(*(from_schema(dict(schema, type=k), macs, depth) for k in kind))
    if kind == "object":
        properties = {
            name: from_schema(sub, macs, depth + 1) for name, sub in (schema.get("properties") or {}).items()
        }
        required = set(schema.get("required") or ())
        fixed = {k: v for k, v in properties.items() if k in required}
        optional = {k: v for k, v in properties.items() if k not in required}
        return st.fixed_dictionaries(fixed, optional=optional)
    if kind == "array":
        return st.lists(from_schema(schema.get("items") or {}, macs, depth + 1), max_size=4)
    if kind == "string":
        if "mac" in schema.get("pattern", "") and macs:
            return st.one_of(st.sampled_from(list(macs)), st.from_regex(schema["pattern"], fullmatch=True))
        if schema.get("format") == "uuid":
            return st.one_of(st.uuids().map(str), st.text(max_size=40))
        return st.one_of(st.text(max_size=40), st.sampled_from(HOSTILE_TEXT))
    if kind == "integer":
        return st.one_of(
            st.integers(min_value=schema.get("minimum", -(2 ** 31)), max_value=schema.get("maximum", 2 ** 40)),
            st.sampled_from([0, -1, 2 ** 63, 10 ** 30, 1e20, 0.5]),
        )
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.one_of(st.booleans(), st.sampled_from(["true", 0, None]))
    if kind == "null":
        return st.none()
    return json_values


def _operations(document):
    return [
        (method.upper(), path, operation)
        for path, item in sorted(document["paths"].items())
        for method, operation in sorted(item.items())
    ]


def _path_value(ids):
    return st.one_of(
        st.sampled_from(list(ids)) if ids else st.uuids().map(str),
        st.uuids().map(str),
        st.text(min_size=1, max_size=40).map(lambda t: urllib.parse.quote(t, safe="")),
        st.sampled_from(["%ff%fe", "..", "%2e%2e", "a" * 2000, "%00"]),
    )


@st.composite
def requests(draw, document, ids=(), macs=(), credentials=None):
    """``(method, target, headers, body)``: one hostile or careless request."""
    method, path, operation = draw(st.sampled_from(_operations(document)))
    if draw(st.integers(0, 19)) == 0:
        method = draw(st.sampled_from(["PUT", "PATCH", "OPTIONS", "TRACE", "BREW"]))
    parameters = operation.get("parameters", [])
    for p in parameters:
        if p["in"] == "path":
            path = path.replace("{" + p["name"] + "}", draw(_path_value(ids)))
    query = []
    for p in parameters:
        if p["in"] == "query" and draw(st.booleans()):
            value = draw(st.one_of(from_schema(p["schema"], macs), st.sampled_from(HOSTILE_TEXT)))
            query.append((p["name"], value if isinstance(value, str) else json.dumps(value)))
    if draw(st.integers(0, 9)) == 0:
        query.append((draw(st.text(max_size=12)), draw(st.text(max_size=12))))
    target = path + ("?" + urllib.parse.urlencode(query) if query else "")
    headers = []
    for p in parameters:
        if p["in"] == "header" and draw(st.integers(0, 3)) == 0:
            value = draw(st.one_of(
                st.sampled_from(HOSTILE_TEXT).map(lambda t: t.encode("utf-8", "surrogatepass")),
                st.from_regex(r"[0-9]{1,3}\.[0-9]{1,3}", fullmatch=True).map(str.encode),
                st.sampled_from(HOSTILE_HEADER_VALUES),
            ))
            if p["name"] == "OpenStack-API-Version":
                value = b"baremetal-introspection " + value
            headers.append((p["name"], value))
    if credentials is not None:
        headers.append(credentials)  # (name, value) of a valid client
    elif draw(st.integers(0, 4)) == 0:
        token = draw(st.binary(max_size=40))
        headers.append(draw(st.sampled_from([
            ("Authorization", b"Basic " + base64.b64encode(token)),
            ("Authorization", token.replace(b"\r", b"").replace(b"\n", b"")),
            ("X-Auth-Token", base64.b64encode(token)),
        ])))
    body = None
    if "requestBody" in operation or method in ("POST", "PUT", "PATCH"):
        schema = (operation.get("requestBody") or {}).get("content", {}).get("application/json", {}).get("schema", {})
        choice = draw(st.integers(0, 9))
        if choice < 6:
            body = json.dumps(draw(from_schema(schema, macs))).encode()
        elif choice < 8:
            body = json.dumps(draw(json_values)).encode()
        else:
            body = draw(st.sampled_from(HOSTILE_BODIES))
        headers.append(("Content-Type", draw(st.sampled_from(
            [b"application/json", b"text/plain", b"multipart/form-data; boundary=x",
             b"application/x-www-form-urlencoded"]
        ))))
    return method, target, headers, body


def send(address, method, target, headers=(), body=None, source=None, timeout=30):
    """``(status, {header: value}, body bytes, seconds)`` of one request on its own connection."""
    head = "{} {} HTTP/1.1\r\n".format(method, target).encode("utf-8", "surrogatepass")
    head += b"Host: %s:%d\r\nConnection: close\r\n" % (address[0].encode(), address[1])
    for name, value in headers:
        head += name.encode() + b": " + (value if isinstance(value, bytes) else value.encode()) + b"\r\n"
    if body is not None:
        head += b"Content-Length: %d\r\n" % len(body)
    start = time.monotonic()
    with socket.create_connection(address, timeout=timeout, source_address=(source, 0) if source else None) as s:
        s.sendall(head + b"\r\n" + (body or b""))
        chunks = []
        while True:
            try:
                data = s.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            chunks.append(data)
    elapsed = time.monotonic() - start
    status, response_headers, content = parse(b"".join(chunks))
    return status, response_headers, content, elapsed


def parse(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    try:
        status = int(lines[0].split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None, {}, raw
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    if headers.get("transfer-encoding") == "chunked":
        chunks = []
        while body:
            size, _, rest = body.partition(b"\r\n")
            size = int(size.split(b";")[0], 16)
            if not size:
                break
            chunks.append(rest[:size])
            body = rest[size + 2:]
        body = b"".join(chunks)
    return status, headers, body


def problems(status, headers, body, elapsed, method="GET"):
    """What is wrong with an answer, as a list of strings (empty: fine)."""
    found = []
    if status is None:
        return ["no HTTP answer: {!r}".format(body[:200])]
    if status >= 500:
        found.append("status {}".format(status))
    if 300 <= status < 400:
        found.append("redirect {} to {!r} (the API has none)".format(status, headers.get("location")))
    if elapsed > SLOW:
        found.append("took {:.2f} s".format(elapsed))
    if status >= 400:
        if not headers.get("content-type", "").startswith("application/json"):
            found.append("error {} with Content-Type {!r}".format(status, headers.get("content-type")))
        try:
            payload = json.loads(body)
            if not (list(payload) == ["error"] and list(payload["error"]) == ["message"]
                    and isinstance(payload["error"]["message"], str)):
                found.append("error body not in the JSON error format: {!r}".format(body[:200]))
            elif "Traceback" in payload["error"]["message"]:
                found.append("traceback in an error message")
        except (ValueError, TypeError, AttributeError):
            found.append("error body is not JSON: {!r}".format(body[:200]))
    elif method != "HEAD" and body and headers.get("content-type", "").startswith("application/json"):
        try:
            json.loads(body, parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))
        except ValueError as e:
            found.append("non-standard JSON in a {} answer: {}".format(status, e))
    return found


def flood_logins(host, port, threads, seconds, source, target="/v1/introspection?limit=1"):
    """Unknown users' logins from ``threads`` threads for ``seconds``; ``{status: count}``.

    Run in a process of its own (``python -m devenv.fuzz flood ...``) so
    that the flood's threads do not slow the measuring client down.
    """
    import concurrent.futures
    import collections

    counts = collections.Counter()
    deadline = time.monotonic() + seconds

    def one(n):
        # Keep-alive connections, as an attacker would: no port churn.
        connection = None
        i = 0
        while time.monotonic() < deadline:
            i += 1
            header = "Basic " + base64.b64encode("nobody{}-{}:x".format(n, i).encode()).decode()
            try:
                if connection is None:
                    connection = http.client.HTTPConnection(host, port, timeout=10, source_address=(source, 0))
                connection.request("GET", target, headers={"Authorization": header})
                response = connection.getresponse()
                response.read()
                status = response.status
                if response.will_close:
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException):
                status = None
                if connection is not None:
                    connection.close()
                connection = None
            counts[status] += 1

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(threads)))
    return dict(counts)


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["flood"]:
        host, port, threads, seconds, source = sys.argv[2:7]
        print(json.dumps(flood_logins(host, int(port), int(threads), float(seconds), source)))
