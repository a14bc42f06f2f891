"""The boot-storm workload and the floor, as asyncio coroutines.

Enrollment and preparation talk to Ironic directly; everything a service
does, and the floor's calls, go through the counting proxy.
"""

import asyncio
import datetime
import json
import os
import time

from bench.httpc import Client, HTTPError, bounded

IRONIC_HEADERS = {"X-OpenStack-Ironic-API-Version": "1.78", "Accept": "application/json"}
FIXTURE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "fixtures", "ipa-payload.json")
PORTS_PER_NODE = 4
GiB = 1024 ** 3


def split_url(url):
    host, _, port = url.split("://", 1)[1].rstrip("/").rpartition(":")
    return host, int(port)


def ironic_client(url, size):
    host, port = split_url(url)
    return Client(host, port, size=size, headers=IRONIC_HEADERS)


def service_client(url, size):
    host, port = split_url(url)
    return Client(host, port, size=size, headers={"Accept": "application/json"})


def node_macs(index):
    return ["52:54:{:02x}:{:02x}:{:02x}:{:02x}".format((index >> 16) & 0xFF, (index >> 8) & 0xFF, index & 0xFF, j + 1)
            for j in range(PORTS_PER_NODE)]


def _fixture():
    with open(FIXTURE, encoding="utf-8") as f:
        return json.load(f)


def payloads(count):
    """The IPA callback body of each node, as bytes, in node order."""
    from tests.integration.base import ipa_payload  # the integration tests' builder, on the same fixture

    return [json.dumps(ipa_payload(node_macs(i))).encode() for i in range(count)]


def floor_patch(template=None):
    """One JSON patch with every property introspection writes from the payload.

    What ironic-inspector's and inspectord's default hooks set: cpus,
    cpu_arch, memory_mb, local_gb (root disk minus 1 GiB) and capabilities
    (boot mode and CPU-flag capabilities).
    """
    data = template or _fixture()
    inventory = data["inventory"]
    flags = set(inventory["cpu"].get("flags") or [])
    caps = {"boot_mode": inventory["boot"]["current_boot_mode"]}
    for flag, name in sorted({"vmx": "cpu_vt", "svm": "cpu_vt", "aes": "cpu_aes", "pse": "cpu_hugepages",
                              "pdpe1gb": "cpu_hugepages_1g", "smx": "cpu_txt"}.items()):
        if flag in flags:
            caps[name] = "true"
    root = data.get("root_disk") or max(inventory["disks"], key=lambda d: d["size"])
    properties = {
        "cpus": str(inventory["cpu"]["count"]),
        "cpu_arch": inventory["cpu"]["architecture"],
        "memory_mb": str(inventory["memory"]["physical_mb"]),
        "local_gb": str(int(root["size"]) // GiB - 1),
        "capabilities": ",".join("{}:{}".format(k, v) for k, v in caps.items()),
    }
    return [{"op": "add", "path": "/properties/" + k, "value": v} for k, v in sorted(properties.items())]


class Progress:
    """Prints ``label: done/total`` at most every ``every`` seconds."""

    def __init__(self, printer, label, total, every=3.0):
        self.printer = printer
        self.label = label
        self.total = total
        self.every = every
        self.done = 0
        self.started = time.monotonic()
        self._last = self.started

    def tick(self, *_ignored, count=1):
        self.done += count
        now = time.monotonic()
        if now - self._last >= self.every or self.done == self.total:
            self._last = now
            self.printer("  {}: {}/{} ({:.0f} s)".format(self.label, self.done, self.total, now - self.started))


async def _checked(client, method, path, body=None, ok=(200,), retries=20):
    """Set-up request: retried on connection errors, 409 locked and 503 (set-up is not measured)."""
    for attempt in range(retries):
        try:
            response = await client.request(method, path, body)
        except (HTTPError, OSError, asyncio.TimeoutError) as e:
            problem = str(e)
        else:
            if response.status in ok:
                return response
            problem = "{} {}: {} {}".format(method, path, response.status, response.body[:300])
            if response.status not in (409, 503):
                raise RuntimeError(problem)
        await asyncio.sleep(min(0.2 * 2 ** attempt, 5))
    raise RuntimeError("gave up: " + problem)


async def enroll(ironic_url, count, concurrency, printer, prefix="bench"):
    """Create ``count`` fake-hardware nodes with 4 ports each, all ``manageable``; their UUIDs, in order."""
    client = ironic_client(ironic_url, concurrency)
    progress = Progress(printer, "enrolled", count)

    async def one(index):
        node = (await _checked(client, "POST", "/v1/nodes", {
            "name": "{}-{:05d}".format(prefix, index), "driver": "fake-hardware",
        }, ok=(201,))).json()
        uuid = node["uuid"]
        for mac in node_macs(index):
            await _checked(client, "POST", "/v1/ports", {"address": mac, "node_uuid": uuid}, ok=(201,))
        await _checked(client, "PUT", "/v1/nodes/{}/states/provision".format(uuid), {"target": "manage"},
                       ok=(202,))
        for _ in range(600):
            state = (await _checked(client, "GET", "/v1/nodes/{}?fields=provision_state,last_error".format(uuid))).json()
            if state["provision_state"] == "manageable":
                break
            if state["provision_state"] == "enroll" and state.get("last_error"):
                raise RuntimeError("node {} could not be managed: {}".format(uuid, state["last_error"]))
            await asyncio.sleep(0.2)
        else:
            raise RuntimeError("node {} never became manageable".format(uuid))
        return uuid

    try:
        return await bounded(list(range(count)), concurrency, one, progress.tick)
    finally:
        await client.close()


async def start_introspection(service_url, uuids, concurrency, printer):
    """POST /v1/introspection/<uuid> for every node; count of failures."""
    client = service_client(service_url, concurrency)
    progress = Progress(printer, "introspection started", len(uuids))
    failures = []

    async def one(uuid):
        try:
            await _checked(client, "POST", "/v1/introspection/" + uuid, ok=(202,), retries=3)
        except RuntimeError as e:
            failures.append("{}: {}".format(uuid, e))

    try:
        await bounded(uuids, concurrency, one, progress.tick)
    finally:
        await client.close()
    return failures


async def poll_status(service_url, uuids, done, printer, label, concurrency=4, timeout=1800.0, pause=0.25,
                      counts=None):
    """Poll GET /v1/introspection/<uuid> until ``done(status)`` holds for every node.

    Returns ``{uuid: last status}``; nodes still not done after ``timeout``
    keep their last status.  ``counts["requests"]`` (if given) counts the reads.
    """
    client = service_client(service_url, concurrency)
    progress = Progress(printer, label, len(uuids))
    last = {}
    pending = list(uuids)
    deadline = time.monotonic() + timeout

    async def one(uuid):
        if counts is not None:
            counts["requests"] = counts.get("requests", 0) + 1
        try:
            response = await client.request("GET", "/v1/introspection/" + uuid)
        except (HTTPError, OSError, asyncio.TimeoutError):
            return False
        if response.status != 200:
            return False
        last[uuid] = response.json()
        return done(last[uuid])

    try:
        while pending and time.monotonic() < deadline:
            results = await bounded(pending, concurrency, one)
            finished = sum(results)
            if finished:
                progress.tick(count=finished)
            pending = [u for u, ok in zip(pending, results) if not ok]
            if pending:
                await asyncio.sleep(pause)
    finally:
        await client.close()
    return last


async def storm(service_url, payloads, concurrency, printer):
    """POST every payload to /v1/continue, ``concurrency`` in flight.

    Returns one record per callback: ``{"sent", "latency", "status", "error"}``
    (``sent`` in wall-clock seconds).
    """
    client = service_client(service_url, concurrency)
    progress = Progress(printer, "callbacks answered", len(payloads))

    async def one(body):
        sent = time.time()
        started = time.monotonic()
        record = {"sent": sent, "status": None, "error": None}
        try:
            response = await client.request("POST", "/v1/continue", body)
            record["status"] = response.status
            if response.status != 200:
                record["error"] = response.body[:300].decode("utf-8", "replace")
        except (HTTPError, OSError, asyncio.TimeoutError) as e:
            record["error"] = "{}: {}".format(e.__class__.__name__, e)
        record["latency"] = time.monotonic() - started
        return record

    try:
        records = await bounded(payloads, concurrency, one, progress.tick)
    finally:
        await client.close()
    return records, client.stale_retries


def parse_time(text):
    """Seconds since the epoch from an API timestamp (UTC, with or without offset)."""
    if not text:
        return None
    stamp = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.timezone.utc)
    return stamp.timestamp()


async def power(ironic_url, uuids, target, concurrency, printer, label):
    """Set every node's power (set-up, not measured) and wait until Ironic reports it."""
    client = ironic_client(ironic_url, concurrency)
    progress = Progress(printer, label, len(uuids))
    wanted = {"power on": "power on", "power off": "power off", "rebooting": "power on"}[target]

    async def one(uuid):
        await _checked(client, "PUT", "/v1/nodes/{}/states/power".format(uuid), {"target": target}, ok=(202,))
        for _ in range(600):
            node = (await _checked(client, "GET", "/v1/nodes/{}?fields=power_state,target_power_state".format(uuid))).json()
            if node["power_state"] == wanted and not node.get("target_power_state"):
                return
            await asyncio.sleep(0.1)
        raise RuntimeError("node {} never reached {}".format(uuid, wanted))

    try:
        await bounded(uuids, concurrency, one, progress.tick)
    finally:
        await client.close()


async def floor(proxy_url, uuids, concurrency, printer):
    """Ironic's own cost: per node one PATCH with every property and one power-off PUT.

    Returns ``(records, first_sent, last_done)``; a record per node:
    ``{"sent", "latency", "status", "error"}``.  Failed calls are not retried.
    """
    client = ironic_client(proxy_url, concurrency)
    patch = floor_patch()
    progress = Progress(printer, "floor nodes", len(uuids))

    async def one(uuid):
        sent = time.time()
        started = time.monotonic()
        record = {"sent": sent, "status": None, "error": None}
        try:
            response = await client.request("PATCH", "/v1/nodes/" + uuid, patch)
            record["status"] = response.status
            if response.status == 200:
                response = await client.request("PUT", "/v1/nodes/{}/states/power".format(uuid),
                                                {"target": "power off"})
                record["status"] = response.status
            if response.status not in (200, 202):
                record["error"] = response.body[:300].decode("utf-8", "replace")
        except (HTTPError, OSError, asyncio.TimeoutError) as e:
            record["error"] = "{}: {}".format(e.__class__.__name__, e)
        record["latency"] = time.monotonic() - started
        record["done"] = time.time()
        return record

    try:
        records = await bounded(uuids, concurrency, one, progress.tick)
    finally:
        await client.close()
    return records
