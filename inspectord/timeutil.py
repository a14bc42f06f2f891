"""Times as inspectord stores and shows them."""

import datetime


def utc(seconds):
    """Naive UTC datetime of an epoch time (what the database columns hold)."""
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).replace(tzinfo=None)


def iso(seconds):
    """ISO 8601 text, with its UTC offset, of an epoch time."""
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).isoformat()


_EPOCH = datetime.datetime(1970, 1, 1)


def posix(naive_utc):
    """Epoch seconds of a naive UTC datetime (the inverse of :func:`utc`)."""
    return (naive_utc - _EPOCH).total_seconds()
