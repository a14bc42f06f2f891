"""Introspection rules: validation and evaluation, without I/O.

A rule is a plain dict, as :func:`validate` returns it and the store keeps
it::

    {"uuid": ..., "description": ..., "scope": ...,
     "conditions": [{"op", "field", "multiple", "invert", **params}],
     "actions": [{"action", **params}]}

:func:`check` says whether a rule applies to a node and its introspection
data; :func:`apply` records the rule's actions on a
:class:`~inspectord.processing.hooks.NodeContext`; :func:`apply_all` does
both for every stored rule, as ironic-inspector's ``rules.apply`` does.

Formats, parameter names, defaults and operator semantics are
ironic-inspector 12.5.0's.  Where it would crash on a value it let through
(a field that is not an IP address for ``in-net``, a string compared with
a number, a non-list ``extend-attribute`` target), the condition is false
or the action a :class:`~inspectord.errors.ProcessingError` instead.
"""

import copy
import functools
import ipaddress
import operator
import re
import uuid as uuid_mod

from twisted.logger import Logger

from inspectord import errors
from inspectord.processing.hooks import parse_capabilities

log = Logger(namespace="inspectord.processing.rules")

MULTIPLE = ("any", "all", "first")
SCHEMES = ("data", "node")
MAX_SCOPE_LENGTH = 255
_CONDITION_KEYS = ("op", "field", "multiple", "invert")

# ironic-inspector reads node:// fields from openstacksdk's Node.to_dict(),
# whose names differ from the Ironic API's for these fields.  Both work here.
SDK_NODE_ALIASES = {
    "id": "uuid",
    "allocation_id": "allocation_uuid",
    "chassis_id": "chassis_uuid",
    "instance_id": "instance_uuid",
    "is_automated_clean_enabled": "automated_clean",
    "is_console_enabled": "console_enabled",
    "is_maintenance": "maintenance",
    "is_protected": "protected",
    "is_retired": "retired",
    "is_secure_boot": "secure_boot",
    "port_groups": "portgroups",
}


def _check_params(params, required=(), optional=(), strict=True):
    """Upstream's parameter check: a parameter set to null counts as absent.

    Raises ValueError listing the missing and (if ``strict``) unexpected ones.
    """
    passed = {name for name, value in params.items() if value is not None}
    problems = []
    missing = sorted(set(required) - passed)
    if missing:
        problems.append("missing required parameter(s): {}".format(", ".join(missing)))
    if strict:
        unexpected = sorted(passed - set(required) - set(optional))
        if unexpected:
            problems.append("unexpected parameter(s): {}".format(", ".join(unexpected)))
    if problems:
        raise ValueError("; ".join(problems))


def _check_string(params, name):
    if not isinstance(params[name], str) or not params[name]:
        raise ValueError("{} must be a non-empty string, got {!r}".format(name, params[name]))


def _check_path(params):
    path = params["path"]
    if not isinstance(path, str) or not path.strip("/"):
        raise ValueError("path must be a string naming a node field like /extra/foo, got {!r}".format(path))


# Conditions


class Condition:
    """An operator: checks one field value against the condition's params."""

    required = ("value",)
    optional = ()
    strict = True
    #: Whether a field missing from the data is checked as None (else the
    #: rule does not apply).
    allow_none = False

    def validate(self, params):
        _check_params(params, self.required, self.optional, self.strict)

    def check(self, field, params):
        raise NotImplementedError


def _coerce(field, expected):
    # Upstream: compare as the type of the rule's value.  bool is an int.
    if isinstance(expected, float):
        return float(field)
    if isinstance(expected, int):
        return int(field)
    return field


class Compare(Condition):
    def __init__(self, op):
        self.op = op

    def check(self, field, params):
        expected = params["value"]
        try:
            field = _coerce(field, expected)
        except (TypeError, ValueError, OverflowError):
            pass  # compared as is: equality still has an answer
        try:
            return bool(self.op(field, expected))
        except TypeError:
            return False


class IsEmpty(Condition):
    required = ()
    allow_none = True

    def check(self, field, params):
        return field is None or (isinstance(field, (str, list, dict)) and not field)


@functools.lru_cache(maxsize=256)
def _network(value):
    return ipaddress.ip_network(value, strict=False)


class InNet(Condition):
    def validate(self, params):
        super().validate(params)
        value = params["value"]
        if not isinstance(value, str):
            raise ValueError("invalid value: {!r} is not a network".format(value))
        try:
            _network(value)
        except ValueError as e:
            raise ValueError("invalid value: {}".format(e)) from None

    def check(self, field, params):
        if isinstance(field, bool) or not isinstance(field, (str, int)):
            return False
        try:
            address = ipaddress.ip_address(field)
        except ValueError:
            return False
        # An address of the other IP version is simply not in the network.
        return address in _network(params["value"])


@functools.lru_cache(maxsize=256)
def _regex(value):
    return re.compile(value)


class Regex(Condition):
    # Upstream accepts (and keeps) unknown parameters on the regex operators.
    strict = False

    def validate(self, params):
        super().validate(params)
        value = params["value"]
        if not isinstance(value, str):
            raise ValueError("invalid regular expression: {!r} is not a string".format(value))
        try:
            _regex(value)
        except re.error as e:
            raise ValueError("invalid regular expression: {}".format(e)) from None


class Matches(Regex):
    def check(self, field, params):
        return _regex(params["value"]).fullmatch(str(field)) is not None


class Contains(Regex):
    def check(self, field, params):
        return _regex(params["value"]).search(str(field)) is not None


CONDITIONS = {
    "eq": Compare(operator.eq),
    "ne": Compare(operator.ne),
    "lt": Compare(operator.lt),
    "gt": Compare(operator.gt),
    "le": Compare(operator.le),
    "ge": Compare(operator.ge),
    "in-net": InNet(),
    "matches": Matches(),
    "contains": Contains(),
    "is-empty": IsEmpty(),
}


# Actions


class Action:
    required = ()
    optional = ()
    #: Parameters formatted with ``str.format(data=data)`` before applying.
    formatted = ()

    def validate(self, params):
        _check_params(params, self.required, self.optional)

    def apply(self, node, params):
        raise NotImplementedError


def _patch_path(path):
    # Like ironic-inspector (and the Ironic CLI), a missing leading slash is added.
    return path if path.startswith("/") else "/" + path


class Fail(Action):
    required = ("message",)

    def apply(self, node, params):
        raise errors.ProcessingError(str(params["message"]))


class SetAttribute(Action):
    required = ("path",)
    optional = ("value", "reset_interfaces")
    formatted = ("value",)

    def validate(self, params):
        # value is required but may be null (to unset the attribute).
        if "value" not in params:
            raise ValueError("missing required parameter(s): value")
        super().validate(params)
        _check_path(params)

    def apply(self, node, params):
        node.patch([{"op": "add", "path": _patch_path(params["path"]), "value": params["value"]}])


class SetCapability(Action):
    required = ("name",)
    optional = ("value",)
    formatted = ("value",)

    def validate(self, params):
        super().validate(params)
        _check_string(params, "name")

    def apply(self, node, params):
        name, value = params["name"], params.get("value")
        if value is not None:
            node.update_capabilities(**{name: value})
            return
        # As upstream: a capability set to null is dropped.
        caps = parse_capabilities(node.properties.get("capabilities"))
        if name in caps:
            del caps[name]
            node.update_properties(capabilities=",".join("{}:{}".format(k, v) for k, v in caps.items()))


_MISSING = object()


def _lookup(document, path):
    """The value at a JSON-pointer ``path`` in ``document``, or _MISSING."""
    value = document
    for part in path.strip("/").split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


class ExtendAttribute(Action):
    required = ("path", "value")
    optional = ("unique",)
    formatted = ("value",)

    def validate(self, params):
        super().validate(params)
        _check_path(params)

    def apply(self, node, params):
        path = _patch_path(params["path"])
        current = _lookup(node.view(), path)
        if current is _MISSING or current is None:
            current = []
        if not isinstance(current, list):
            raise errors.ProcessingError(
                "Cannot extend attribute {}: its value {!r} is not a list".format(path, current)
            )
        value = params["value"]
        if params.get("unique") and value in current:
            return
        node.patch([{"op": "add", "path": path, "value": current + [value]}])


class AddTrait(Action):
    required = ("name",)

    def validate(self, params):
        super().validate(params)
        _check_string(params, "name")

    def apply(self, node, params):
        node.add_trait(params["name"])


class RemoveTrait(AddTrait):
    def apply(self, node, params):
        node.remove_trait(params["name"])


ACTIONS = {
    "fail": Fail(),
    "set-attribute": SetAttribute(),
    "set-capability": SetCapability(),
    "extend-attribute": ExtendAttribute(),
    "add-trait": AddTrait(),
    "remove-trait": RemoveTrait(),
}


# Fields


def split_field(field):
    """``(scheme, path)`` of a condition field; no scheme means ``data``."""
    scheme, sep, path = field.partition("://")
    if not sep:
        return "data", field
    return scheme, path


@functools.lru_cache(maxsize=512)
def _json_path(path):
    import jsonpath_ng  # only rules with JSON path conditions use it; not imported by an idle service

    return jsonpath_ng.parse(path)


# Validation


def _known(names):
    return ", ".join(sorted(names))


def _validate_uuid(value):
    if value is None or value == "":
        return str(uuid_mod.uuid4())
    if isinstance(value, str):
        try:
            return str(uuid_mod.UUID(value))
        except ValueError:
            pass
    raise errors.InvalidInput("Invalid UUID value {!r} for uuid".format(value))


def _validate_condition(index, cond):
    where = "conditions[{}]".format(index)
    if not isinstance(cond, dict):
        raise errors.InvalidInput("Validation failed for conditions: {} must be an object".format(where))
    for key in ("op", "field"):
        if key not in cond:
            raise errors.InvalidInput(
                "Validation failed for conditions: {}.{} is a required property".format(where, key)
            )
    op = cond["op"]
    if not isinstance(op, str) or op not in CONDITIONS:
        raise errors.InvalidInput(
            "Validation failed for conditions: {}.op: unknown operator {!r}, expected one of {}".format(
                where, op, _known(CONDITIONS)
            )
        )
    field = cond["field"]
    if not isinstance(field, str):
        raise errors.InvalidInput(
            "Validation failed for conditions: {}.field: {!r} is not a string".format(where, field)
        )
    multiple = cond.get("multiple", "any")
    if not isinstance(multiple, str) or multiple not in MULTIPLE:
        raise errors.InvalidInput(
            "Validation failed for conditions: {}.multiple: {!r} is not one of {}".format(
                where, multiple, ", ".join(MULTIPLE)
            )
        )
    invert = cond.get("invert", False)
    if not isinstance(invert, bool):
        raise errors.InvalidInput(
            "Validation failed for conditions: {}.invert: {!r} is not a boolean".format(where, invert)
        )
    scheme, path = split_field(field)
    if scheme not in SCHEMES:
        raise errors.InvalidInput(
            "{}.field: unsupported scheme {!r}, valid values are node:// or data://".format(where, scheme)
        )
    try:
        _json_path(path)
    except Exception as e:  # jsonpath-ng raises several unrelated types
        raise errors.InvalidInput(
            "{}.field: unable to parse field JSON path {!r}: {}".format(where, field, e)
        ) from None
    params = {k: v for k, v in cond.items() if k not in _CONDITION_KEYS}
    try:
        CONDITIONS[op].validate(params)
    except ValueError as e:
        raise errors.InvalidInput("Invalid parameters for operator {} in {}: {}".format(op, where, e)) from None
    return {"op": op, "field": field, "multiple": multiple, "invert": invert, **params}


def _validate_action(index, act):
    where = "actions[{}]".format(index)
    if not isinstance(act, dict):
        raise errors.InvalidInput("Validation failed for actions: {} must be an object".format(where))
    if "action" not in act:
        raise errors.InvalidInput("Validation failed for actions: {}.action is a required property".format(where))
    name = act["action"]
    if not isinstance(name, str) or name not in ACTIONS:
        raise errors.InvalidInput(
            "Validation failed for actions: {}.action: unknown action {!r}, expected one of {}".format(
                where, name, _known(ACTIONS)
            )
        )
    params = {k: v for k, v in act.items() if k != "action"}
    try:
        ACTIONS[name].validate(params)
    except ValueError as e:
        raise errors.InvalidInput("Invalid parameters for action {} in {}: {}".format(name, where, e)) from None
    return {"action": name, **params}


def validate(body):
    """The normalized rule for a ``POST /v1/rules`` body; InvalidInput if invalid."""
    if not isinstance(body, dict):
        raise errors.InvalidInput("The rule must be a JSON object")
    rule_uuid = _validate_uuid(body.get("uuid"))
    description = body.get("description")
    if description is not None and not isinstance(description, str):
        raise errors.InvalidInput("Invalid description {!r}: it must be a string".format(description))
    scope = body.get("scope")
    if scope is not None and not isinstance(scope, str):
        raise errors.InvalidInput("Invalid scope {!r}: it must be a string".format(scope))
    if scope and len(scope) > MAX_SCOPE_LENGTH:
        raise errors.InvalidInput(
            "Invalid scope: the length of the scope should be within {} characters".format(MAX_SCOPE_LENGTH)
        )
    conditions = body.get("conditions", [])
    if not isinstance(conditions, list):
        raise errors.InvalidInput("Validation failed for conditions: conditions must be a list")
    conditions = [_validate_condition(i, c) for i, c in enumerate(conditions)]
    actions = body.get("actions", [])
    if not isinstance(actions, list):
        raise errors.InvalidInput("Validation failed for actions: actions must be a list")
    if not actions:
        raise errors.InvalidInput("Validation failed for actions: actions must contain at least one action")
    actions = [_validate_action(i, a) for i, a in enumerate(actions)]
    return {
        "uuid": rule_uuid,
        "description": description,
        "scope": scope,
        "conditions": conditions,
        "actions": actions,
    }


def as_dict(rule, short=False):
    """The API representation of ``rule`` (without links)."""
    result = {"uuid": rule["uuid"], "description": rule.get("description"), "scope": rule.get("scope")}
    if not short:
        conditions = []
        for cond in rule.get("conditions") or []:
            cond = copy.deepcopy(cond)
            cond.setdefault("multiple", "any")
            cond.setdefault("invert", False)
            conditions.append(cond)
        result["conditions"] = conditions
        result["actions"] = copy.deepcopy(list(rule.get("actions") or []))
    return result


# Evaluation


def _name(rule):
    return rule.get("description") or rule["uuid"]


def node_fields(node):
    """What ``node://`` fields are read from: the node with pending changes."""
    view = node.view()
    for alias, name in SDK_NODE_ALIASES.items():
        if name in view and alias not in view:
            view[alias] = view[name]
    return view


def in_scope(rule, node):
    """A rule without scope is global; else the node's inspection_scope must match."""
    scope = rule.get("scope")
    if not scope:
        return True
    return scope == (node.view().get("properties") or {}).get("inspection_scope")


def _check_condition(cond, values):
    operator_ = CONDITIONS[cond["op"]]
    params = {k: v for k, v in cond.items() if k not in _CONDITION_KEYS}
    multiple = cond.get("multiple", "any")
    invert = cond.get("invert", False)
    result = False
    for value in values:
        result = operator_.check(value, params)
        if invert:
            result = not result
        if multiple == "first" or (multiple == "all" and not result) or (multiple == "any" and result):
            break
    return result


def check(rule, node, data):
    """Whether ``rule`` applies to ``node`` (a NodeContext) given ``data``."""
    if not in_scope(rule, node):
        log.debug("Node {node}: rule {rule} is out of its scope {scope}", node=node.uuid, rule=_name(rule),
                  scope=rule.get("scope"))
        return False
    fields = None
    for cond in rule.get("conditions") or []:
        if cond.get("op") not in CONDITIONS:
            raise errors.ProcessingError("Rule {} has an unknown operator {!r}".format(_name(rule), cond.get("op")))
        scheme, path = split_field(cond["field"])
        if scheme == "node":
            if fields is None:
                fields = node_fields(node)
            source = fields
        else:
            source = data
        values = [match.value for match in _json_path(path).find(source)]
        if not values:
            if not CONDITIONS[cond["op"]].allow_none:
                log.info("Node {node}: field {field} not found, rule {rule} will not be applied",
                         node=node.uuid, field=cond["field"], rule=_name(rule))
                return False
            values = [None]
        if not _check_condition(cond, values):
            log.info("Node {node}: rule {rule} will not be applied: condition {field} {op} failed",
                     node=node.uuid, rule=_name(rule), field=cond["field"], op=cond["op"])
            return False
    log.info("Node {node}: rule {rule} will be applied", node=node.uuid, rule=_name(rule))
    return True


def format_value(value, data):
    """``value`` with every string in it (dict keys too) formatted with ``data``."""
    if isinstance(value, str):
        try:
            return value.format(data=data)
        except (KeyError, IndexError, AttributeError, TypeError, ValueError) as e:
            raise errors.ProcessingError(
                "Invalid formatting variable key provided in value {!r}: {}: {}".format(value, type(e).__name__, e)
            ) from None
    if isinstance(value, dict):
        return {format_value(k, data): format_value(v, data) for k, v in value.items()}
    if isinstance(value, list):
        return [format_value(v, data) for v in value]
    return value


def apply(rule, node, data):
    """Record ``rule``'s actions on ``node``; ``fail`` raises ProcessingError."""
    for act in rule.get("actions") or []:
        action = ACTIONS.get(act.get("action"))
        if action is None:
            raise errors.ProcessingError("Rule {} has an unknown action {!r}".format(_name(rule), act.get("action")))
        params = {k: v for k, v in act.items() if k != "action"}
        for name in action.formatted:
            if name in params:
                params[name] = format_value(params[name], data)
        log.debug("Node {node}: rule {rule} runs {action}", node=node.uuid, rule=_name(rule), action=act["action"])
        action.apply(node, params)


def apply_all(rules, node, data):
    """Apply each of ``rules`` (in creation order) that matches; their uuids.

    As ironic-inspector does, every rule is checked before any is applied, so
    one rule's actions do not change whether another one matches.
    """
    matching = [rule for rule in rules if check(rule, node, data)]
    for rule in matching:
        apply(rule, node, data)
    return [rule["uuid"] for rule in matching]
