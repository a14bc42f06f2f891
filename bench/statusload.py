"""The status read path under load: ``GET /v1/introspection/<uuid>`` with wrk.

wrk (Debian package ``wrk``) is a C load generator: a Python one saturates
long before the service does.  A Lua script rotates through the node UUIDs
and prints one JSON line at the end with the request count and latency
percentiles.
"""

import json
import os
import shutil
import subprocess
import tempfile

_SCRIPT = """\
local uuids = {%(uuids)s}
local index = 0
wrk.headers["Accept"] = "application/json"
request = function()
  index = index + 1
  if index > #uuids then index = 1 end
  return wrk.format("GET", "/v1/introspection/" .. uuids[index])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\nBENCH-JSON {"requests": %%d, "duration_us": %%d, "connect_errors": %%d, "read_errors": %%d, ' ..
    '"write_errors": %%d, "status_errors": %%d, "timeouts": %%d, "p50_us": %%d, "p90_us": %%d, ' ..
    '"p99_us": %%d, "max_us": %%d, "mean_us": %%f}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


def have_wrk():
    return shutil.which("wrk") is not None


def run_wrk(url, uuids, connections, seconds, threads=None):
    """Run wrk against ``url``; returns ``{"rps", "p50_ms", "p99_ms", "errors", ...}``."""
    threads = threads or min(connections, 2)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_SCRIPT % {"uuids": ", ".join('"{}"'.format(u) for u in uuids)})
    try:
        result = subprocess.run(
            ["wrk", "-t{}".format(threads), "-c{}".format(connections), "-d{}s".format(seconds),
             "--timeout", "10s", "-s", script.name, url],
            capture_output=True, text=True, timeout=seconds + 60,
        )
    finally:
        os.unlink(script.name)
    line = next((l for l in result.stdout.splitlines() if l.startswith("BENCH-JSON ")), None)
    if line is None:
        raise RuntimeError("wrk failed ({}):\n{}\n{}".format(result.returncode, result.stdout[-2000:], result.stderr[-2000:]))
    raw = json.loads(line[len("BENCH-JSON "):])
    duration = raw["duration_us"] / 1e6
    errors = raw["connect_errors"] + raw["read_errors"] + raw["write_errors"] + raw["status_errors"] + raw["timeouts"]
    return {
        "connections": connections,
        "seconds": round(duration, 3),
        "requests": raw["requests"],
        "rps": raw["requests"] / duration if duration else 0.0,
        "p50_ms": raw["p50_us"] / 1000.0,
        "p90_ms": raw["p90_us"] / 1000.0,
        "p99_ms": raw["p99_us"] / 1000.0,
        "max_ms": raw["max_us"] / 1000.0,
        "errors": errors,
        "raw": raw,
    }
