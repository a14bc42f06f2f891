"""API microversions: negotiation and the headers every response carries."""

import re

from inspectord import errors

MINIMUM = (1, 0)
CURRENT = (1, 18)
# What a request without a version header gets (ironic-inspector: the latest).
DEFAULT = CURRENT

VERSION_HEADER = "X-OpenStack-Ironic-Inspector-API-Version"
MIN_HEADER = "X-OpenStack-Ironic-Inspector-API-Minimum-Version"
MAX_HEADER = "X-OpenStack-Ironic-Inspector-API-Maximum-Version"
STANDARD_HEADER = "OpenStack-API-Version"
SERVICE_TYPE = "baremetal-introspection"

# ASCII digits only (``\d`` also matches other scripts' digits), few of them:
# a 10,000-digit number must not reach int().
_VERSION = re.compile(r"[ \t]*([0-9]{1,6})\.([0-9]{1,6})[ \t]*", re.ASCII)
MAX_VERSION_HEADER_LENGTH = 256


class UnsupportedVersion(errors.InspectordError):
    """The API version asked for is outside the supported range."""


def fmt(version):
    return "{}.{}".format(*version)


def parse(text):
    """``(major, minor)`` from ``X.Y`` or ``latest``.

    :raises errors.InvalidInput: malformed.
    """
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    if text.strip().lower() == "latest":
        return CURRENT
    m = _VERSION.fullmatch(text)
    if not m:
        raise errors.InvalidInput(
            "Malformed API version {!r}: expected string in form of X.Y or latest".format(text[:40])
        )
    return int(m.group(1)), int(m.group(2))


def _from_standard(value):
    """The version for our service in an ``OpenStack-API-Version`` header."""
    for item in value.split(","):
        parts = item.strip().split(None, 1)
        if len(parts) == 2 and parts[0].lower() == SERVICE_TYPE:
            return parts[1]
    return None


def negotiate(inspector_header, standard_header):
    """The version a request asks for (either header), checked.

    :raises errors.InvalidInput: malformed (400).
    :raises UnsupportedVersion: unsupported.
    """
    for value in (inspector_header, standard_header):
        if value is not None and len(value) > MAX_VERSION_HEADER_LENGTH:
            raise errors.InvalidInput("Malformed API version: the header is longer than {} characters".format(MAX_VERSION_HEADER_LENGTH))
    if isinstance(standard_header, bytes):
        standard_header = standard_header.decode("latin-1")
    text = inspector_header
    if text is None and standard_header is not None:
        text = _from_standard(standard_header)
    if text is None:
        return DEFAULT
    version = parse(text)
    if version < MINIMUM or version > CURRENT:
        raise UnsupportedVersion(
            "Unsupported API version {}, supported range is {} to {}".format(fmt(version), fmt(MINIMUM), fmt(CURRENT))
        )
    return version
