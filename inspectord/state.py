"""Introspection states, events and the transition table.

The model is ironic-inspector's (``introspection_state.py``) with one fix:
``error`` is allowed from ``waiting``, so a ramdisk that reports an error
ends the introspection at once instead of leaving the node to time out.

Nothing here does I/O.  The store applies a transition as a compare-and-set
``UPDATE`` whose ``WHERE`` clause names the states the event may leave, as
given by :func:`sources`.
"""

import enum

from inspectord import errors


class State(str, enum.Enum):
    starting = "starting"
    waiting = "waiting"
    processing = "processing"
    finished = "finished"
    error = "error"
    reapplying = "reapplying"
    enrolling = "enrolling"
    aborting = "aborting"


class Event(str, enum.Enum):
    start = "start"
    wait = "wait"
    process = "process"
    finish = "finish"
    error = "error"
    timeout = "timeout"
    abort = "abort"
    abort_end = "abort_end"
    reapply = "reapply"


S, E = State, Event

TRANSITIONS = {
    S.starting: {E.wait: S.waiting, E.error: S.error, E.timeout: S.error},
    S.waiting: {
        E.process: S.processing,
        E.start: S.starting,
        E.abort: S.aborting,
        E.timeout: S.error,
        E.error: S.error,
    },
    S.processing: {E.finish: S.finished, E.error: S.error, E.timeout: S.error},
    S.reapplying: {
        E.finish: S.finished,
        E.error: S.error,
        E.reapply: S.reapplying,
        E.timeout: S.error,
    },
    S.enrolling: {E.process: S.processing, E.error: S.error, E.timeout: S.error},
    S.aborting: {E.abort_end: S.error, E.timeout: S.error},
    S.finished: {E.start: S.starting, E.reapply: S.reapplying, E.finish: S.finished},
    S.error: {
        E.start: S.starting,
        E.reapply: S.reapplying,
        E.abort: S.error,
        E.error: S.error,
    },
}

#: States in which a node is under introspection (not yet finished).
ACTIVE = frozenset({S.starting, S.waiting, S.processing, S.reapplying, S.enrolling, S.aborting})
#: States in which an instance works on the node: each has an owner and a lease.
LEASED = frozenset({S.starting, S.processing, S.reapplying, S.enrolling, S.aborting})
#: States that end an introspection.
FINAL = frozenset({S.finished, S.error})


def next_state(current, event):
    """The state ``event`` leads to from ``current``.

    :raises errors.InvalidTransition: the event is not allowed there.
    """
    current, event = State(current), Event(event)
    try:
        return TRANSITIONS[current][event]
    except KeyError:
        raise errors.InvalidTransition(current.value, event.value) from None


def sources(event):
    """Every state ``event`` may be applied in, mapped to where it leads."""
    event = Event(event)
    return {src: dst[event] for src, dst in TRANSITIONS.items() if event in dst}
