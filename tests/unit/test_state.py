"""The introspection state machine: every transition, allowed or not."""

import itertools

from twisted.trial.unittest import SynchronousTestCase

from inspectord import errors
from inspectord import state as st
from inspectord.api.status import status_for
from inspectord.state import Event as E
from inspectord.state import State as S

# ironic-inspector's introspection_state.py (12.5.0), written out by hand so
# that a change to the table in inspectord shows up here, plus the one fix
# inspectord makes: ``waiting --error--> error``.
EXPECTED = {
    (S.starting, E.wait): S.waiting,
    (S.starting, E.error): S.error,
    (S.starting, E.timeout): S.error,
    (S.waiting, E.process): S.processing,
    (S.waiting, E.start): S.starting,
    (S.waiting, E.abort): S.aborting,
    (S.waiting, E.timeout): S.error,
    (S.waiting, E.error): S.error,  # the fix
    (S.processing, E.finish): S.finished,
    (S.processing, E.error): S.error,
    (S.processing, E.timeout): S.error,
    (S.reapplying, E.finish): S.finished,
    (S.reapplying, E.error): S.error,
    (S.reapplying, E.reapply): S.reapplying,
    (S.reapplying, E.timeout): S.error,
    (S.enrolling, E.process): S.processing,
    (S.enrolling, E.error): S.error,
    (S.enrolling, E.timeout): S.error,
    (S.aborting, E.abort_end): S.error,
    (S.aborting, E.timeout): S.error,
    (S.finished, E.start): S.starting,
    (S.finished, E.reapply): S.reapplying,
    (S.finished, E.finish): S.finished,
    (S.error, E.start): S.starting,
    (S.error, E.reapply): S.reapplying,
    (S.error, E.abort): S.error,
    (S.error, E.error): S.error,
}


class TransitionTableTests(SynchronousTestCase):
    def test_allowed_transitions(self):
        """Every allowed (state, event) pair leads where ironic-inspector says."""
        for (state, event), target in sorted(EXPECTED.items()):
            self.assertEqual(st.next_state(state, event), target, "{} --{}-->".format(state.value, event.value))

    def test_accepts_plain_strings(self):
        """The store passes the column's text; it works as well as the enum."""
        self.assertIs(st.next_state("waiting", "process"), S.processing)
        self.assertIs(st.next_state("processing", "finish"), S.finished)

    def test_disallowed_transitions_raise(self):
        """Every pair not in the table raises InvalidTransition naming both."""
        refused = 0
        for state, event in itertools.product(S, E):
            if (state, event) in EXPECTED:
                continue
            with self.assertRaises(errors.InvalidTransition) as caught:
                st.next_state(state, event)
            self.assertEqual((caught.exception.state, caught.exception.event), (state.value, event.value))
            self.assertIn(repr(state.value), caught.exception.message)
            self.assertIn(repr(event.value), caught.exception.message)
            refused += 1
        self.assertEqual(refused, len(S) * len(E) - len(EXPECTED))

    def test_table_has_nothing_else(self):
        """The module's table is exactly the expected one (no extra pairs)."""
        actual = {(src, ev): dst for src, events in st.TRANSITIONS.items() for ev, dst in events.items()}
        self.assertEqual(actual, EXPECTED)

    def test_waiting_error_is_the_fix(self):
        """A ramdisk error ends a waiting introspection at once (upstream lost it)."""
        self.assertIs(st.next_state(S.waiting, E.error), S.error)

    def test_start_refused_while_busy(self):
        """A new start is refused while the node is starting or processing."""
        for state in (S.starting, S.processing, S.reapplying, S.enrolling, S.aborting):
            self.assertRaises(errors.InvalidTransition, st.next_state, state, E.start)

    def test_invalid_transition_is_a_conflict(self):
        """The API answers 409 to an event the state cannot accept."""
        try:
            st.next_state(S.processing, E.start)
        except errors.InvalidTransition as e:
            self.assertIsInstance(e, errors.NodeBusy)
            self.assertEqual(status_for(e), 409)
        else:
            self.fail("processing accepted start")

    def test_unknown_names_raise_value_error(self):
        self.assertRaises(ValueError, st.next_state, "sleeping", E.start)
        self.assertRaises(ValueError, st.next_state, S.waiting, "jump")

    def test_sources(self):
        """sources() lists every state an event may leave, with its target."""
        self.assertEqual(
            st.sources(E.error),
            {S.starting: S.error, S.waiting: S.error, S.processing: S.error, S.reapplying: S.error,
             S.enrolling: S.error, S.error: S.error},
        )
        self.assertEqual(st.sources("start"), {S.waiting: S.starting, S.finished: S.starting, S.error: S.starting})
        self.assertEqual(st.sources(E.abort_end), {S.aborting: S.error})
        for event in E:
            self.assertEqual(
                st.sources(event), {src: dst for (src, ev), dst in EXPECTED.items() if ev is event}, event
            )

    def test_active_and_final(self):
        self.assertEqual(st.FINAL, {S.finished, S.error})
        self.assertEqual(st.ACTIVE, set(S) - {S.finished, S.error})
        # A final state never times out; every active one can.
        for state in S:
            self.assertEqual(E.timeout in st.TRANSITIONS[state], state in st.ACTIVE, state)
