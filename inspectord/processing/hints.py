"""Ironic root device hints, matched against inventory disks.

Hints are a dict such as ``{"size": ">= 100", "rotational": false,
"model": "s== Samsung"}``.  String hints compare case-insensitively by
default, or with the operators ``s==``, ``s!=``, ``<in>``, ``<or>``;
``size`` is in GiB with ``==``, ``!=``, ``>=``, ``<=``, ``>``, ``<``
(a bare number means ``==``); ``rotational`` is a boolean.
"""

import operator

GiB = 1024**3

STRING_HINTS = ("model", "vendor", "serial", "wwn", "wwn_with_extension", "wwn_vendor_extension", "hctl", "by_path", "name")
_NUMERIC_OPS = {
    "==": operator.eq,
    "!=": operator.ne,
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}


def _norm(value):
    return " ".join(str(value).split()).lower()


_STRING_OPS = ("s==", "s!=", "<in>", "<or>")


def _match_string(expression, actual, hint):
    if actual is None:
        return False
    op, _, operand = str(expression).strip().partition(" ")
    if op not in _STRING_OPS:
        op, operand = "==", str(expression).strip()
    alternatives = [a.strip() for a in operand.split("<or>")] if op == "<or>" else [operand.strip()]
    if hint == "name":
        alternatives = [a if a.startswith("/dev/") else "/dev/" + a for a in alternatives]
    actual, alternatives = _norm(actual), [_norm(a) for a in alternatives]
    if op == "s!=":
        return actual != alternatives[0]
    if op == "<in>":
        return alternatives[0] in actual
    return actual in alternatives


def _match_size(expression, size_bytes):
    if size_bytes is None:
        return False
    text = str(expression).strip()
    op = operator.eq
    for symbol in sorted(_NUMERIC_OPS, key=len, reverse=True):
        if text.startswith(symbol):
            op, text = _NUMERIC_OPS[symbol], text[len(symbol):].strip()
            break
    try:
        wanted = int(text)
    except ValueError:
        raise ValueError("size hint {!r} is not a number of GiB".format(expression)) from None
    return op(int(size_bytes) // GiB, wanted)


def _as_bool(value):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ValueError("rotational hint {!r} is not a boolean".format(value))


def validate(hints):
    if not isinstance(hints, dict):
        raise ValueError("root device hints must be an object")
    unknown = set(hints) - set(STRING_HINTS) - {"size", "rotational"}
    if unknown:
        raise ValueError("unknown root device hint(s): {}".format(", ".join(sorted(unknown))))


def matches(disk, hints):
    validate(hints)
    for hint, expression in hints.items():
        if hint == "size":
            if not _match_size(expression, disk.get("size")):
                return False
        elif hint == "rotational":
            if disk.get("rotational") is None or bool(disk["rotational"]) != _as_bool(expression):
                return False
        elif not _match_string(expression, disk.get(hint), hint):
            return False
    return True


def find_devices(disks, hints):
    """Every disk matching ``hints``."""
    return [d for d in disks if matches(d, hints)]


def match_root_device(disks, hints):
    """The first disk matching ``hints``, or None.

    :raises ValueError: the hints are malformed.
    """
    validate(hints)
    found = find_devices(disks, hints)
    return found[0] if found else None
