"""Who may get a DHCP answer: the pure decision of DESIGN §5."""

from twisted.trial.unittest import SynchronousTestCase

from inspectord.pxe import decisions

A, B, C, D = "52:54:00:00:00:0a", "52:54:00:00:00:0b", "52:54:00:00:00:0c", "52:54:00:00:00:0d"
UNKNOWN = "52:54:00:ff:ff:ff"


class NormalizeTests(SynchronousTestCase):
    def test_canonical_form(self):
        self.assertEqual(decisions.normalize_mac(" 52:54:00:AB:cd:EF "), "52:54:00:ab:cd:ef")
        self.assertEqual(decisions.normalize_mac("52-54-00-ab-cd-ef"), "52:54:00:ab:cd:ef")

    def test_anything_else_is_refused(self):
        for value in (None, 5, "", "52:54:00:ab:cd", "52:54:00:ab:cd:ef:01", "zz:54:00:ab:cd:ef",
                      "52:54:00:ab:cd:ef\n-A INPUT -j ACCEPT", "52:54:00:ab:cd:ef }", "../../etc/passwd"):
            self.assertIsNone(decisions.normalize_mac(value), value)

    def test_normalize_macs_splits(self):
        good, bad = decisions.normalize_macs([A.upper(), "nope", B, B])
        self.assertEqual(good, {A, B})
        self.assertEqual(bad, ["nope"])


class DecideTests(SynchronousTestCase):
    def test_active_allowed_other_known_denied(self):
        state = decisions.decide([A], True, {A, B, C}, deny_unknown_macs=False, discovery=False)
        self.assertEqual(state.allowed, {A})
        self.assertEqual(state.denied, {B, C})
        self.assertTrue(state.allow_unknown)
        self.assertTrue(state.allows(A))
        self.assertFalse(state.allows(B))
        self.assertTrue(state.allows(UNKNOWN))

    def test_nothing_under_introspection_nobody_answered(self):
        state = decisions.decide([], False, {A, B}, deny_unknown_macs=False, discovery=False)
        self.assertEqual(state.allowed, frozenset())
        self.assertEqual(state.denied, {A, B})
        self.assertFalse(state.allow_unknown)
        self.assertFalse(any(state.allows(m) for m in (A, B, UNKNOWN)))

    def test_discovery_allows_unknown_with_nothing_active(self):
        state = decisions.decide([], False, {A}, deny_unknown_macs=False, discovery=True)
        self.assertTrue(state.allows(UNKNOWN))
        self.assertFalse(state.allows(A))

    def test_deny_unknown_macs_wins_over_everything(self):
        for active, discovery in ((True, False), (False, True), (True, True)):
            state = decisions.decide([A] if active else [], active, {A, B}, deny_unknown_macs=True, discovery=discovery)
            self.assertFalse(state.allow_unknown)
            self.assertFalse(state.allows(UNKNOWN))
            self.assertEqual(state.allows(A), active)

    def test_node_without_mac_still_opens_discovery(self):
        state = decisions.decide([], True, {A}, deny_unknown_macs=False, discovery=False)
        self.assertTrue(state.allow_unknown)

    def test_ironic_not_read_refuses_unknown(self):
        state = decisions.decide([A], True, None, deny_unknown_macs=False, discovery=True)
        self.assertEqual(state.allowed, {A})
        self.assertEqual(state.denied, frozenset())
        self.assertFalse(state.allow_unknown)

    def test_active_mac_not_in_ironic_is_allowed(self):
        state = decisions.decide([D], True, {A}, deny_unknown_macs=True, discovery=False)
        self.assertTrue(state.allows(D))

    def test_closed(self):
        self.assertFalse(decisions.CLOSED.allows(A))


class DiffTests(SynchronousTestCase):
    def test_diff(self):
        old = decisions.FilterState(frozenset({A}), frozenset({B, C}), False)
        new = decisions.FilterState(frozenset({B}), frozenset({A, C}), True)
        change = decisions.diff(old, new)
        self.assertEqual(change.allowed_added, {B})
        self.assertEqual(change.allowed_removed, {A})
        self.assertEqual(change.denied_added, {A})
        self.assertEqual(change.denied_removed, {B})
        self.assertTrue(change.unknown_changed)
        self.assertFalse(change.empty)
        self.assertTrue(decisions.diff(new, new).empty)
