"""JSON in and out of the API: strict parsing with a nesting limit, standard output.

Request bodies are parsed as RFC 8259 JSON only: ``NaN``, ``Infinity`` and
numbers too large for a float (``1e400``) are refused, as are lone UTF-16
surrogates (``"\\ud800"``), which no database or JSON encoder downstream
accepts, and nesting deeper than :data:`MAX_JSON_DEPTH`.  Every refusal is
an :class:`inspectord.errors.InvalidInput` saying why.

Responses never contain non-standard JSON: a non-finite float that reached
storage in an earlier version is rendered as ``null``.
"""

import json
import math
import re

from inspectord import errors

MAX_JSON_DEPTH = 32
"""Deepest nesting of arrays and objects a request body may have.

An ironic-python-agent inventory nests 6 levels and a rule 5; 32 leaves
room for any real payload while keeping every later walk of the data
(hooks, rules, copies, the database encoder) far from Python's recursion
limit.
"""


def _constant(name):
    raise ValueError("{} is not valid JSON".format(name))


def _finite_float(text):
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("the number {} is out of range".format(text[:40]))
    return value


#: A ``\\uD800``-``\\uDFFF`` escape: in an ASCII body, the only way a
#: surrogate gets into the parsed value.  An ASCII body without one (nearly
#: every body) needs no check of its strings.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _may_hold_surrogate(raw):
    return not (isinstance(raw, bytes) and raw.isascii() and _SURROGATE_ESCAPE.search(raw) is None)


def _check_shape(value, limit, texts=True):
    """Raise InvalidInput for nesting deeper than ``limit`` or (``texts``) a lone surrogate (iterative)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if texts:
                _check_text(item)
            continue
        if not isinstance(item, (dict, list)):
            continue
        if depth > limit:
            raise errors.InvalidInput(
                "Invalid JSON in the request body: nested deeper than the limit of {} levels".format(limit)
            )
        if isinstance(item, dict):
            if texts:
                for key in item:
                    _check_text(key)
            stack.extend((child, depth + 1) for child in item.values())
        else:
            stack.extend((child, depth + 1) for child in item)


def _check_text(text):
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise errors.InvalidInput(
            "Invalid JSON in the request body: a string holds a lone UTF-16 surrogate"
        ) from None


def parse_json(raw, limit=MAX_JSON_DEPTH):
    """The value of a JSON request body.

    :raises errors.InvalidInput: not strict JSON, too deeply nested, or
        holding a lone surrogate.
    """
    try:
        value = json.loads(raw, parse_constant=_constant, parse_float=_finite_float)
    except RecursionError:
        raise errors.InvalidInput(
            "Invalid JSON in the request body: nested deeper than the limit of {} levels".format(limit)
        ) from None
    except ValueError as e:  # also UnicodeDecodeError and Python's integer digit limit
        raise errors.InvalidInput("Invalid JSON in the request body: {}".format(e)) from None
    _check_shape(value, limit, texts=_may_hold_surrogate(raw))
    return value


def _standard(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _standard(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_standard(v) for v in value]
    return value


def dumps(value):
    """``value`` as standard JSON bytes (non-finite floats become ``null``)."""
    try:
        return json.dumps(value, allow_nan=False).encode()
    except ValueError:
        return json.dumps(_standard(value), allow_nan=False).encode()
