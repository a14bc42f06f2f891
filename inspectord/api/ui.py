"""The live status page: ``GET /ui`` and ``GET /ui/nodes/<node>``.

Server-rendered HTML behind the API's authentication (policy rule
``introspection:status``; the stored data summary needs
``introspection:data``).  A few lines of JavaScript fetch the same page
again every few seconds and swap its live part in; without JavaScript the
page is complete, only not refreshed.  Every value is escaped; the inline
script and style carry a per-response nonce that the Content-Security-Policy
requires.
"""

import base64
import datetime
import html
import os

from twisted.logger import Logger

from inspectord import diagnosis, errors
from inspectord.api.status import status_for
from inspectord.hooks import lldp_tlvs

RULE = "introspection:status"
DATA_RULE = "introspection:data"
#: How many records the overview reads (newest first).
LIST_LIMIT = 200
#: Finished records shown under "Recently finished".
RECENT = 50
REFRESH_SECONDS = 5

log = Logger()

_CSS = """
:root{--fg:#1b1f24;--muted:#4a5360;--bg:#fff;--line:#c9d1d9;--head:#f2f4f7;--link:#0b5cad;
--ok:#116329;--ok-bg:#dafbe1;--err:#a40e26;--err-bg:#ffebe9;--run:#6b4400;--run-bg:#fff1cc}
*{box-sizing:border-box}
body{margin:0;font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
header{display:flex;flex-wrap:wrap;gap:.25rem 1rem;align-items:baseline;padding:.75rem 1rem;border-bottom:1px solid var(--line)}
header h1{font-size:1.25rem;margin:0}
header p{margin:0;color:var(--muted);font-size:.9rem}
main{padding:1rem;max-width:90rem}
h2{font-size:1.1rem;margin:1.25rem 0 .5rem}
a{color:var(--link)}
a:focus-visible,button:focus-visible{outline:3px solid #0969da;outline-offset:2px}
table{border-collapse:collapse;width:100%;font-size:.95rem}
caption{text-align:left;font-weight:600;padding:.25rem 0;color:var(--muted)}
th,td{border:1px solid var(--line);padding:.4rem .55rem;text-align:left;vertical-align:top}
th{background:var(--head)}
td.error{max-width:28rem;overflow-wrap:anywhere}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.9em;overflow-wrap:anywhere}
.state{display:inline-block;padding:.05rem .45rem;border-radius:.75rem;font-weight:600;font-size:.85rem;border:1px solid currentColor}
.state-finished{color:var(--ok);background:var(--ok-bg)}
.state-error{color:var(--err);background:var(--err-bg)}
.state-active{color:var(--run);background:var(--run-bg)}
.dhcp-blocked{color:var(--err);font-weight:600}
.dhcp-never{color:var(--run);font-weight:600}
.dhcp-answered{color:var(--ok);font-weight:600}
.muted{color:var(--muted)}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem;margin:0}
dl.facts dt{font-weight:600}
dl.facts dd{margin:0;overflow-wrap:anywhere}
p.empty{color:var(--muted);font-style:italic}
@media (max-width:44rem){
 table.cards thead{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}
 table.cards,table.cards caption,table.cards tbody,table.cards tr,table.cards td{display:block;width:100%}
 table.cards tr{border:1px solid var(--line);border-radius:.4rem;margin:0 0 .75rem;padding:.25rem .5rem}
 table.cards td{border:0;padding:.2rem 0}
 table.cards td::before{content:attr(data-label) ": ";font-weight:600}
 dl.facts{grid-template-columns:1fr}
 dl.facts dd{margin-bottom:.4rem}
}
"""

_SCRIPT = """
(function(){
  var status=document.getElementById('refresh-status');
  function tick(){
    if(document.hidden){return;}
    fetch(location.href,{credentials:'same-origin',headers:{'Accept':'text/html'}})
      .then(function(r){if(!r.ok){throw new Error('HTTP '+r.status);}return r.text();})
      .then(function(text){
        var doc=new DOMParser().parseFromString(text,'text/html');
        var fresh=doc.getElementById('live'),live=document.getElementById('live');
        if(fresh&&live){live.innerHTML=fresh.innerHTML;}
        status.textContent='Updated '+new Date().toLocaleTimeString();
      })
      .catch(function(e){status.textContent='Refresh failed ('+e.message+'); retrying';});
  }
  setInterval(tick,%d);
})();
""" % (REFRESH_SECONDS * 1000)


def _e(value):
    return html.escape("" if value is None else str(value), quote=True)


def _duration(seconds):
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return "{}h {:02d}m".format(hours, minutes)
    if minutes:
        return "{}m {:02d}s".format(minutes, secs)
    return "{}s".format(secs)


def _when(value):
    if value is None:
        return ""
    if isinstance(value, (int, float)):
        value = datetime.datetime.fromtimestamp(value, datetime.timezone.utc)
    elif isinstance(value, str):
        value = datetime.datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _time(value):
    """A ``<time>`` element (machine-readable datetime, readable text)."""
    if value is None:
        return ""
    text = _when(value)
    if isinstance(value, datetime.datetime):
        iso = (value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)).isoformat()
    else:
        iso = str(value)
    return '<time datetime="{}">{}</time>'.format(_e(iso), _e(text))


def _state_badge(state):
    kind = "finished" if state == "finished" else "error" if state == "error" else "active"
    return '<span class="state state-{}">{}</span>'.format(kind, _e(state))


def dhcp_cell(status):
    """``(short HTML, sentence)`` of a node's DHCP diagnosis (:func:`inspectord.diagnosis.dhcp_status`)."""
    if status is None:
        return '<span class="muted">not recorded</span>', "DHCP requests are not recorded (no sniffer)"
    if not status["seen"]:
        return '<span class="dhcp-never">never seen</span>', diagnosis.describe(status)
    when = _time(status.get("last_dhcp_request"))
    if not status["allowed_by_filter"]:
        html_ = '<span class="dhcp-blocked">blocked</span> {} <span class="mono">{}</span>'
    else:
        html_ = '<span class="dhcp-answered">answered</span> {} <span class="mono">{}</span>'
    return html_.format(when, _e(status.get("mac"))), diagnosis.describe(status)


def _page(title, body, nonce, heading_extra=""):
    return """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light">
<title>{title} · inspectord</title>
<style nonce="{nonce}">{css}</style>
</head>
<body>
<header>
<h1>{title}</h1>
<p>{extra}<span id="refresh-status" role="status">Refreshes every {refresh} s</span></p>
</header>
<main>
{body}
</main>
<script nonce="{nonce}">{script}</script>
</body>
</html>
""".format(
        title=_e(title), nonce=nonce, css=_CSS, extra=heading_extra, refresh=REFRESH_SECONDS, body=body, script=_SCRIPT
    )


def _node_label(record):
    name = record.name
    return '<a href="/ui/nodes/{uuid}">{text}</a><br><span class="mono muted">{uuid}</span>'.format(
        uuid=_e(record.uuid), text=_e(name or record.uuid)
    ) if name else '<a class="mono" href="/ui/nodes/{uuid}">{uuid}</a>'.format(uuid=_e(record.uuid))


def _elapsed(record, now):
    end = record.finished_at or now
    return _duration((end - record.started_at).total_seconds())


def _active_table(records, api, now):
    if not records:
        return '<p class="empty">No node is under introspection.</p>'
    rows = []
    for r in records:
        dhcp_html, dhcp_text = dhcp_cell(api.introspection.dhcp_status(r))
        rows.append(
            "<tr>"
            '<td data-label="Node">{node}</td>'
            '<td data-label="State">{state}</td>'
            '<td data-label="Started">{started}</td>'
            '<td data-label="Elapsed">{elapsed}</td>'
            '<td data-label="DHCP" title="{dhcp_text}">{dhcp}</td>'
            '<td data-label="Last error" class="error">{error}</td>'
            "</tr>".format(
                node=_node_label(r),
                state=_state_badge(r.state),
                started=_time(r.started_at),
                elapsed=_e(_elapsed(r, now)),
                dhcp=dhcp_html,
                dhcp_text=_e(dhcp_text),
                error=_e(r.error) if r.error else '<span class="muted">none</span>',
            )
        )
    return (
        '<table class="cards" id="active-nodes"><caption>{n} node(s) under introspection</caption>'
        '<thead><tr><th scope="col">Node</th><th scope="col">State</th><th scope="col">Started</th>'
        '<th scope="col">Elapsed</th><th scope="col">DHCP</th><th scope="col">Last error</th></tr></thead>'
        "<tbody>{rows}</tbody></table>".format(n=len(records), rows="".join(rows))
    )


def _recent_table(records, now):
    if not records:
        return '<p class="empty">No introspection has finished yet.</p>'
    rows = []
    for r in records:
        rows.append(
            "<tr>"
            '<td data-label="Node">{node}</td>'
            '<td data-label="State">{state}</td>'
            '<td data-label="Finished">{finished}</td>'
            '<td data-label="Took">{took}</td>'
            '<td data-label="Error" class="error">{error}</td>'
            "</tr>".format(
                node=_node_label(r),
                state=_state_badge(r.state),
                finished=_time(r.finished_at),
                took=_e(_elapsed(r, now)),
                error=_e(r.error) if r.error else '<span class="muted">none</span>',
            )
        )
    return (
        '<table class="cards" id="recent-nodes"><caption>{n} most recent</caption>'
        '<thead><tr><th scope="col">Node</th><th scope="col">State</th><th scope="col">Finished</th>'
        '<th scope="col">Took</th><th scope="col">Error</th></tr></thead>'
        "<tbody>{rows}</tbody></table>".format(n=len(records), rows="".join(rows))
    )


def _nonce():
    return base64.b64encode(os.urandom(18)).decode()


def _html(request, body, nonce, code=200):
    request.setResponseCode(code)
    request.setHeader("Content-Type", "text/html; charset=utf-8")
    request.setHeader("Cache-Control", "no-store")
    request.setHeader("X-Content-Type-Options", "nosniff")
    request.setHeader("Referrer-Policy", "no-referrer")
    request.setHeader(
        "Content-Security-Policy",
        "default-src 'none'; style-src 'nonce-{n}'; script-src 'nonce-{n}'; connect-src 'self'; "
        "img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'".format(n=nonce),
    )
    return body.encode("utf-8")


async def _guard(api, request, rule):
    """Authenticate like the API; an HTML error page (bytes) when refused, else None."""
    try:
        await api.auth.check(request, rule)
    except errors.InspectordError as e:
        for name, value in getattr(e, "headers", {}).items():  # WWW-Authenticate: browsers ask for a login
            request.setHeader(name, value)
        return _error_page(request, status_for(e), e.message)
    return None


def _error_page(request, code, message):
    """An HTML page for a browser (which asks for text/html); the API's JSON error body for anything else."""
    accept = (request.getHeader(b"accept") or b"").lower()
    if b"text/html" not in accept:
        from inspectord.api import bodies

        request.setResponseCode(code)
        request.setHeader("Content-Type", "application/json")
        return bodies.dumps({"error": {"message": message}})
    nonce = _nonce()
    body = '<p role="alert">{}</p><p><a href="/ui">Back to the overview</a></p>'.format(_e(message))
    return _html(request, _page("Error {}".format(code), body, nonce), nonce, code)


async def overview(api, request):
    """``GET /ui``: nodes under introspection and recently finished."""
    refused = await _guard(api, request, RULE)
    if refused is not None:
        return refused
    try:
        records = await api.store.list_nodes(LIST_LIMIT)
    except Exception:
        log.failure("The status page cannot read the store")
        return _error_page(request, 503, "The database cannot be read; see the inspectord log.")
    now = api.introspection.now()
    active = [r for r in records if r.active]
    recent = [r for r in records if not r.active][:RECENT]
    failed = sum(1 for r in recent if r.state == "error")
    summary = (
        '<dl class="facts" id="summary"><dt>Under introspection</dt><dd>{a}</dd>'
        "<dt>Recently finished</dt><dd>{f} finished, {e} in error</dd>"
        '<dt>Page generated</dt><dd>{now}</dd></dl>'
    ).format(a=len(active), f=len(recent) - failed, e=failed, now=_time(now))
    body = (
        '<div id="live">{summary}<h2 id="active">Under introspection</h2>{active}'
        '<h2 id="recent">Recently finished</h2>{recent}</div>'
    ).format(summary=summary, active=_active_table(active, api, now), recent=_recent_table(recent, now))
    nonce = _nonce()
    return _html(request, _page("Introspection status", body, nonce), nonce)


async def node_page(api, request, node_id):
    """``GET /ui/nodes/<node>``: one node's status, DHCP diagnosis and stored data summary."""
    refused = await _guard(api, request, RULE)
    if refused is not None:
        return refused
    try:
        uuid = await api._node_uuid(node_id)
        record = await api.store.get_node(uuid)
    except errors.NotFound as e:
        return _error_page(request, 404, str(e))
    except errors.InspectordError as e:
        return _error_page(request, status_for(e), str(e))
    now = api.introspection.now()
    dhcp_html, dhcp_text = dhcp_cell(api.introspection.dhcp_status(record)) if record.active else ("", "")
    facts = [
        ("UUID", '<span class="mono">{}</span>'.format(_e(record.uuid))),
        ("Name", _e(record.name) or '<span class="muted">none</span>'),
        ("State", _state_badge(record.state)),
        ("Started", _time(record.started_at)),
        ("Finished", _time(record.finished_at) or '<span class="muted">not yet</span>'),
        ("Elapsed" if record.active else "Took", _e(_elapsed(record, now))),
        ("Provision state", _e(record.provision_state)),
        ("Ports", '<span class="mono">{}</span>'.format(_e(", ".join(sorted(record.ports))) or "none")),
        ("Last error", _e(record.error) if record.error else '<span class="muted">none</span>'),
    ]
    if record.active:
        facts.insert(6, ("DHCP", "{}<br>{}".format(dhcp_html, _e(dhcp_text))))
    status = '<dl class="facts" id="node-status">{}</dl>'.format(
        "".join("<dt>{}</dt><dd>{}</dd>".format(k, v) for k, v in facts)
    )
    data_html = await _data_section(api, request, uuid)
    title = "Node {}".format(record.name or record.uuid)
    body = '<p><a href="/ui">← All nodes</a></p><div id="live">{}<h2 id="hardware">Hardware</h2>{}</div>'.format(
        status, data_html
    )
    nonce = _nonce()
    return _html(request, _page(title, body, nonce), nonce)


async def _data_section(api, request, uuid):
    if api.config.processing.store_data != "database":
        return '<p class="empty">Introspection data is not stored ([processing]store_data).</p>'
    try:
        await api.auth.check(request, DATA_RULE)
    except errors.InspectordError:
        return '<p class="empty">Your role may not read introspection data.</p>'
    data = None
    for processed in (True, False):
        try:
            data = await api.store.get_data(uuid, processed)
            break
        except errors.NotFound:
            continue
    if not isinstance(data, dict):
        return '<p class="empty">No data is stored for this node yet.</p>'
    return summarize(data)


def _lldp_neighbour(data, iface):
    processed = ((data.get("all_interfaces") or {}).get(iface.get("name")) or {}).get("lldp_processed")
    if processed is None:
        tlvs = (data.get("lldp_raw") or {}).get(iface.get("name")) or iface.get("lldp")
        if tlvs:
            try:
                processed = lldp_tlvs.parse(tlvs)
            except Exception:  # malformed TLVs: show none rather than fail the page
                processed = None
    if not processed:
        return '<span class="muted">none</span>'
    switch = processed.get("switch_system_name") or processed.get("switch_chassis_id") or "?"
    port = processed.get("switch_port_id") or processed.get("switch_port_description") or "?"
    description = processed.get("switch_port_description")
    vlans = processed.get("switch_port_vlans") or []
    text = "{} port {}".format(_e(switch), _e(port))
    if description and description != port:
        text += ' <span class="muted">({})</span>'.format(_e(description))
    ids = [str(v.get("id")) for v in vlans[:8] if isinstance(v, dict)]
    untagged = processed.get("switch_port_untagged_vlan_id")
    if untagged is not None and str(untagged) not in ids:
        ids.insert(0, str(untagged))
    if ids:
        text += ' <span class="muted">VLAN {}</span>'.format(_e(", ".join(ids)))
    return text


def _gib(value):
    try:
        return "{:.0f} GiB".format(int(value) / 2**30)
    except (TypeError, ValueError):
        return ""


def summarize(data):
    """HTML summary of stored introspection data: system, CPUs, memory, disks, NICs with LLDP neighbours."""
    inventory = data.get("inventory") if isinstance(data.get("inventory"), dict) else {}
    cpu = inventory.get("cpu") or {}
    memory = inventory.get("memory") or {}
    vendor = inventory.get("system_vendor") or {}
    memory_mb = memory.get("physical_mb") or data.get("memory_mb")
    facts = [
        ("System", " ".join(str(v) for v in (vendor.get("manufacturer"), vendor.get("product_name")) if v) or "unknown"),
        ("CPUs", "{} × {} ({})".format(cpu.get("count") or data.get("cpus") or "?", cpu.get("model_name") or "?",
                                       cpu.get("architecture") or data.get("cpu_arch") or "?")),
        ("Memory", "{} MiB".format(memory_mb) if memory_mb else "unknown"),
        ("BMC", inventory.get("bmc_address") or data.get("ipmi_address") or "unknown"),
    ]
    root = data.get("root_disk") or {}
    if root.get("name"):
        facts.append(("Root disk", "{} ({})".format(root["name"], _gib(root.get("size")))))
    out = ['<dl class="facts" id="hardware-facts">']
    out += ["<dt>{}</dt><dd>{}</dd>".format(_e(k), _e(v)) for k, v in facts]
    out.append("</dl>")
    disks = inventory.get("disks") or []
    out.append('<h2 id="disks">Disks</h2>')
    if disks:
        rows = "".join(
            '<tr><td data-label="Name" class="mono">{}</td><td data-label="Size">{}</td>'
            '<td data-label="Type">{}</td><td data-label="Model">{}</td></tr>'.format(
                _e(d.get("name")), _e(_gib(d.get("size"))), "HDD" if d.get("rotational") else "SSD",
                _e(d.get("model") or ""),
            )
            for d in disks if isinstance(d, dict)
        )
        out.append(
            '<table class="cards" id="disk-table"><caption>{} disk(s)</caption><thead><tr><th scope="col">Name</th>'
            '<th scope="col">Size</th><th scope="col">Type</th><th scope="col">Model</th></tr></thead>'
            "<tbody>{}</tbody></table>".format(len(disks), rows)
        )
    else:
        out.append('<p class="empty">No disks reported.</p>')
    interfaces = [i for i in inventory.get("interfaces") or [] if isinstance(i, dict)]
    out.append('<h2 id="nics">Network interfaces</h2>')
    if interfaces:
        rows = "".join(
            '<tr><td data-label="Name">{}</td><td data-label="MAC" class="mono">{}</td>'
            '<td data-label="IP address" class="mono">{}</td><td data-label="Link">{}</td>'
            '<td data-label="LLDP neighbour">{}</td></tr>'.format(
                _e(i.get("name")), _e(i.get("mac_address")), _e(i.get("ipv4_address") or i.get("ipv6_address") or ""),
                "up" if i.get("has_carrier") else "down", _lldp_neighbour(data, i),
            )
            for i in interfaces
        )
        out.append(
            '<table class="cards" id="nic-table"><caption>{} interface(s)</caption><thead><tr>'
            '<th scope="col">Name</th><th scope="col">MAC</th><th scope="col">IP address</th>'
            '<th scope="col">Link</th><th scope="col">LLDP neighbour</th></tr></thead>'
            "<tbody>{}</tbody></table>".format(len(interfaces), rows)
        )
    else:
        out.append('<p class="empty">No interfaces reported.</p>')
    return "".join(out)


def register(app):
    """Add the status page's routes to the API's Klein ``app``."""
    app.route("/ui", methods=["GET"])(overview)
    app.route("/ui/nodes/<node_id>", methods=["GET"])(node_page)
