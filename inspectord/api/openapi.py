"""The OpenAPI 3 description of inspectord's API, served at ``GET /v1/openapi.json``.

Built from plain data here; ``tests/unit/test_openapi.py`` checks it
against the routes Klein really has (every route described, nothing
described that is not routed), so the two cannot drift.  The fuzzing
suite (``tests/integration/test_hostile.py``) generates its requests from
this document.
"""

from inspectord.api import bodies, versions

_ERROR = {
    "type": "object",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {
        "error": {
            "type": "object",
            "required": ["message"],
            "additionalProperties": False,
            "properties": {"message": {"type": "string"}},
        }
    },
}

_UUID = {"type": "string", "format": "uuid"}
_NODE_ID = {
    "name": "node_id",
    "in": "path",
    "required": True,
    "description": "Node UUID or (API 1.5) name",
    "schema": {"type": "string"},
}
_RULE_UUID = {"name": "uuid", "in": "path", "required": True, "schema": _UUID}
_VERSION_HEADERS = [
    {
        "name": versions.VERSION_HEADER,
        "in": "header",
        "required": False,
        "description": "X.Y or latest",
        "schema": {"type": "string", "pattern": r"^([0-9]+\.[0-9]+|latest)$"},
    },
    {
        "name": versions.STANDARD_HEADER,
        "in": "header",
        "required": False,
        "description": "baremetal-introspection X.Y",
        "schema": {"type": "string"},
    },
]

_STATUS = {
    "type": "object",
    "required": ["uuid", "finished", "state", "started_at", "finished_at", "error", "links"],
    "properties": {
        "uuid": _UUID,
        "finished": {"type": "boolean"},
        "state": {"type": "string"},
        "started_at": {"type": "string"},
        "finished_at": {"type": ["string", "null"]},
        "error": {"type": ["string", "null"]},
        "links": {"type": "array", "items": {"type": "object"}},
    },
}

_INTERFACE = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "mac_address": {"type": "string", "pattern": "^([0-9a-f]{2}:){5}[0-9a-f]{2}$"},
        "ipv4_address": {"type": ["string", "null"]},
        "ipv6_address": {"type": ["string", "null"]},
        "has_carrier": {"type": "boolean"},
        "lldp": {"type": ["array", "null"]},
        "vendor": {"type": ["string", "null"]},
        "product": {"type": ["string", "null"]},
        "client_id": {"type": ["string", "null"]},
        "biosdevname": {"type": ["string", "null"]},
    },
}
_DISK = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "size": {"type": "integer", "minimum": 0},
        "rotational": {"type": "boolean"},
        "model": {"type": ["string", "null"]},
        "serial": {"type": ["string", "null"]},
        "wwn": {"type": ["string", "null"]},
        "vendor": {"type": ["string", "null"]},
        "hctl": {"type": ["string", "null"]},
        "by_path": {"type": ["string", "null"]},
    },
}
_RAMDISK_DATA = {
    "type": "object",
    "description": "ironic-python-agent introspection data, or the original flat format",
    "properties": {
        "inventory": {
            "type": "object",
            "properties": {
                "interfaces": {"type": "array", "items": _INTERFACE},
                "disks": {"type": "array", "items": _DISK},
                "cpu": {
                    "type": "object",
                    "properties": {
                        "count": {"type": "integer", "minimum": 1, "maximum": 65536},
                        "architecture": {"type": "string"},
                        "flags": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "memory": {
                    "type": "object",
                    "properties": {
                        "physical_mb": {"type": "integer", "minimum": 1, "maximum": 2 ** 32},
                        "total": {"type": "integer"},
                    },
                },
                "bmc_address": {"type": ["string", "null"]},
                "bmc_v6address": {"type": ["string", "null"]},
                "system_vendor": {"type": "object"},
                "boot": {"type": "object"},
            },
        },
        "root_disk": _DISK,
        "boot_interface": {"type": "string"},
        "error": {"type": ["string", "null"]},
        "logs": {"type": "string", "description": "base64 of a gzipped tar"},
        "cpus": {"type": "integer"},
        "cpu_arch": {"type": "string"},
        "memory_mb": {"type": "integer"},
        "local_gb": {"type": "integer"},
        "interfaces": {"type": "object", "additionalProperties": {"type": "object"}},
        "ipmi_address": {"type": "string"},
    },
}
_RULE = {
    "type": "object",
    "required": ["actions"],
    "properties": {
        "uuid": {"type": ["string", "null"]},
        "description": {"type": "string"},
        "conditions": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["op", "field"],
                "properties": {
                    "op": {"type": "string", "enum": ["eq", "lt", "gt", "ne", "le", "ge", "in-net", "matches",
                                                      "contains", "is-empty"]},
                    "field": {"type": "string"},
                    "value": {},
                    "multiple": {"type": "string", "enum": ["any", "all", "first"]},
                    "invert": {"type": "boolean"},
                },
            },
        },
        "actions": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["action"],
                "properties": {
                    "action": {"type": "string", "enum": ["fail", "set-attribute", "set-capability",
                                                          "extend-attribute", "add-trait", "remove-trait"]},
                    "message": {"type": "string"},
                    "path": {"type": "string"},
                    "value": {},
                    "name": {"type": "string"},
                },
            },
        },
        "scope": {"type": ["string", "null"]},
        "sensitive": {"type": "boolean"},
    },
}


def _errors(*codes):
    descriptions = {
        400: "Malformed request (body, parameter or version header)",
        401: "Authentication required or failed",
        403: "Not allowed by the policy, or (continue) node not under introspection",
        404: "No such node, introspection, rule or data",
        405: "Method not allowed on this path (with Allow)",
        406: "Unsupported API version",
        408: "Request head or body not received in time",
        409: "Node busy",
        413: "Request body over the size limit",
        414: "Request line too long",
        429: "Too many concurrent logins from one address (http_basic)",
        431: "Headers too large",
        503: "Ironic or Keystone unavailable",
    }
    common = (400, 405, 406, 408, 413, 414, 431)
    return {
        str(code): {"description": descriptions[code], "content": {"application/json": {"schema": _ERROR}}}
        for code in sorted(set(codes) | set(common))
    }


def _ok(code, description, schema=None):
    response = {"description": description}
    if schema is not None:
        response["content"] = {"application/json": {"schema": schema}}
    return {str(code): response}


def _op(summary, ok, *error_codes, public=False, parameters=(), body=None, body_required=False):
    operation = {
        "summary": summary,
        "parameters": list(parameters) + _VERSION_HEADERS,
        "responses": dict(ok, **_errors(*(error_codes + (() if public else (401, 403, 429, 503))))),
    }
    if public:
        operation["security"] = []
    if body is not None:
        operation["requestBody"] = {"required": body_required, "content": {"application/json": {"schema": body}}}
    return operation


def _text(code, description, media_type):
    return {str(code): {"description": description, "content": {media_type: {"schema": {"type": "string"}}}}}


def _operations_paths():
    """What operators' tools read: health, metrics, the status page (not JSON on success)."""
    node = {"name": "node_id", "in": "path", "required": True, "schema": {"type": "string"}}
    health = _op("Health (ironic-inspector's healthcheck); ?detail=1 or JSON for every dependency",
                 dict(_text(200, "OK", "text/plain"), **_text(503, "Disabled or unhealthy", "text/plain")),
                 404, public=True,
                 parameters=[{"name": "detail", "in": "query", "required": False, "schema": {"type": "string"}}])
    return {
        "/healthcheck": {"get": health},
        "/metrics": {"get": _op("Prometheus metrics", _text(200, "Exposition format", "text/plain"), 404,
                                public=True)},
        "/ui": {"get": _op("Status page", _text(200, "HTML", "text/html"))},
        "/ui/nodes/{node_id}": {"get": _op("A node's status page", _text(200, "HTML", "text/html"), 404,
                                           parameters=[node])},
    }


_BOOL_QUERY = {"type": "string", "enum": ["true", "false", "1", "0", "yes", "no", "on", "off"]}


def document():
    """The OpenAPI 3.1 document (a fresh dict)."""
    node_paths = {
        "/v1/introspection/{node_id}": {
            "post": _op(
                "Start introspection", _ok(202, "Started"), 400, 404, 409,
                parameters=[
                    _NODE_ID,
                    {"name": "manage_boot", "in": "query", "required": False, "schema": _BOOL_QUERY},
                    {"name": "new_ipmi_username", "in": "query", "required": False, "schema": {"type": "string"}},
                    {"name": "new_ipmi_password", "in": "query", "required": False, "schema": {"type": "string"}},
                ],
            ),
            "get": _op("Introspection status", _ok(200, "Status", _STATUS), 404, parameters=[_NODE_ID]),
        },
        "/v1/introspection/{node_id}/abort": {
            "post": _op("Abort introspection", _ok(202, "Aborting"), 400, 404, 409, parameters=[_NODE_ID]),
        },
        "/v1/introspection/{node_id}/data": {
            "get": _op("Processed data", _ok(200, "Data", {"type": "object"}), 404, parameters=[_NODE_ID]),
        },
        "/v1/introspection/{node_id}/data/unprocessed": {
            "get": _op("Raw data", _ok(200, "Data", {"type": "object"}), 404, parameters=[_NODE_ID]),
            "post": _op(
                "Reapply processing", _ok(202, "Reapplying"), 400, 404, 409,
                parameters=[_NODE_ID], body=_RAMDISK_DATA,
            ),
        },
    }
    paths = {
        "/": {"get": _op("API versions", _ok(200, "Versions", {"type": "object"}), public=True)},
        "/v1": {"get": _op("Resources", _ok(200, "Resources", {"type": "object"}), public=True)},
        "/v1/openapi.json": {"get": _op("This document", _ok(200, "OpenAPI 3", {"type": "object"}), public=True)},
        "/v1/continue": {
            "post": _op(
                "Ramdisk callback", _ok(200, "Processed", {"type": "object", "required": ["uuid"]}),
                400, 403, 404, 409, 503, public=True, body=_RAMDISK_DATA, body_required=True,
            )
        },
        "/v1/introspection": {
            "get": _op(
                "List introspections", _ok(200, "Statuses", {"type": "object"}), 400,
                parameters=[
                    {"name": "marker", "in": "query", "required": False, "schema": _UUID},
                    {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 0}},
                    {"name": "state", "in": "query", "required": False, "schema": {"type": "string"}},
                ],
            )
        },
        "/v1/rules": {
            "get": _op("List rules", _ok(200, "Rules", {"type": "object"})),
            "post": _op("Create a rule", dict(_ok(201, "Created", _RULE), **_ok(200, "Created (API < 1.6)", _RULE)),
                        400, 409, body=_RULE, body_required=True),
            "delete": _op("Delete every rule", _ok(204, "Deleted")),
        },
        "/v1/rules/{uuid}": {
            "get": _op("Get a rule", _ok(200, "Rule", _RULE), 404, parameters=[_RULE_UUID]),
            "delete": _op("Delete a rule", _ok(204, "Deleted"), 404, parameters=[_RULE_UUID]),
        },
    }
    paths.update(node_paths)
    paths.update(_operations_paths())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "inspectord (ironic-inspector API)",
            "version": versions.fmt(versions.CURRENT),
            "description": (
                'Every error is {"error": {"message": ...}}. Request bodies are strict JSON nested at most '
                + "{} levels.".format(bodies.MAX_JSON_DEPTH)
            ),
        },
        "components": {
            "securitySchemes": {
                "keystone": {"type": "apiKey", "in": "header", "name": "X-Auth-Token"},
                "http_basic": {"type": "http", "scheme": "basic"},
            }
        },
        "security": [{"keystone": []}, {"http_basic": []}],
        "paths": paths,
    }
