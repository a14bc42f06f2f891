"""Introspection rules: validation, representation, conditions and actions."""

import copy
import datetime
import json
import uuid

from twisted.trial.unittest import SynchronousTestCase

from inspectord import errors
from inspectord.api.status import status_for
from inspectord.processing import rules
from inspectord.processing.hooks import NodeContext, parse_capabilities
from inspectord.store.records import NodeRecord
from tests.unit.helpers import fixture, make_config

NODE_UUID = "1be26c0b-03f2-4d2e-ae87-c02d7f33c123"
RULE_UUID = "7d3b1f0e-5a2c-4f43-9b8e-2b6f0c1d9e44"
T0 = datetime.datetime(2027, 1, 15, 8, 0, 0)
FAIL = [{"action": "fail", "message": "boom!"}]
CONDITION_OPS = ("contains", "eq", "ge", "gt", "in-net", "is-empty", "le", "lt", "matches", "ne")
ACTION_NAMES = ("add-trait", "extend-attribute", "fail", "remove-trait", "set-attribute", "set-capability")


def make_node(**node):
    """A NodeContext for a node recorded with the fields in ``node``."""
    fields = {
        "name": "node-1",
        "driver": "ipmi",
        "provision_state": "manageable",
        "properties": {"capabilities": "boot_mode:uefi"},
        "driver_info": {"ipmi_address": "10.1.2.3", "ipmi_username": "admin"},
        "extra": {},
        "traits": ["CUSTOM_OLD"],
    }
    fields.update(node)
    record = NodeRecord(uuid=NODE_UUID, state="processing", started_at=T0, node=fields, ports={})
    return NodeContext(record, make_config())


def rule_with(conditions=(), actions=FAIL, **body):
    return rules.validate(dict(body, conditions=list(conditions), actions=list(actions)))


def holds(condition, data, node=None):
    """Whether a rule with the single ``condition`` applies to ``data``."""
    return rules.check(rule_with([condition]), node or make_node(), data)


class ValidateTests(SynchronousTestCase):
    def assertBadRequest(self, body, *fragments):
        """validate(body) raises BadRequest whose message holds every fragment."""
        e = self.assertRaises(errors.InvalidInput, rules.validate, body)
        for fragment in fragments:
            self.assertIn(fragment, e.message)
        self.assertEqual(status_for(e), 400)
        return e

    def assertBadCondition(self, condition, *fragments):
        return self.assertBadRequest({"conditions": [{"op": "eq", "field": "a", "value": 1}, condition],
                                      "actions": FAIL}, *fragments)

    def assertBadAction(self, action, *fragments):
        return self.assertBadRequest({"actions": [FAIL[0], action]}, *fragments)

    def test_minimal_rule_is_normalized(self):
        """Only actions given: a fresh uuid4, no description/scope, no conditions."""
        rule = rules.validate({"actions": FAIL})
        self.assertEqual(uuid.UUID(rule.pop("uuid")).version, 4)
        self.assertEqual(rule, {"description": None, "scope": None, "conditions": [], "actions": FAIL})

    def test_generated_uuids_differ(self):
        self.assertNotEqual(rules.validate({"actions": FAIL})["uuid"], rules.validate({"actions": FAIL})["uuid"])

    def test_null_or_empty_uuid_generates_one(self):
        for value in (None, ""):
            generated = rules.validate({"uuid": value, "actions": FAIL})["uuid"]
            self.assertEqual(str(uuid.UUID(generated)), generated)

    def test_keeps_uuid_description_scope(self):
        rule = rules.validate({"uuid": RULE_UUID, "description": "big nodes", "scope": "rack-1", "actions": FAIL})
        self.assertEqual((rule["uuid"], rule["description"], rule["scope"]), (RULE_UUID, "big nodes", "rack-1"))

    def test_uuid_spellings_are_canonicalized(self):
        """Every spelling upstream accepts is stored in the canonical form."""
        for spelling in (RULE_UUID.upper(), RULE_UUID.replace("-", ""), "{" + RULE_UUID + "}",
                         "urn:uuid:" + RULE_UUID):
            self.assertEqual(rules.validate({"uuid": spelling, "actions": FAIL})["uuid"], RULE_UUID)

    def test_invalid_uuid(self):
        for value in ("foobar", RULE_UUID[:-1], 42, ["x"], True):
            self.assertBadRequest({"uuid": value, "actions": FAIL}, "Invalid UUID", "uuid")

    def test_body_not_an_object(self):
        for body in (None, [], "rule", 42):
            self.assertBadRequest(body, "JSON object")

    def test_scope_length(self):
        self.assertEqual(rules.validate({"scope": "s" * 255, "actions": FAIL})["scope"], "s" * 255)
        self.assertBadRequest({"scope": "s" * 256, "actions": FAIL}, "scope", "255")

    def test_scope_and_description_must_be_strings(self):
        self.assertBadRequest({"scope": 7, "actions": FAIL}, "scope")
        self.assertBadRequest({"description": {"a": 1}, "actions": FAIL}, "description")

    def test_conditions_must_be_a_list(self):
        for value in (None, {}, "eq"):
            self.assertBadRequest({"conditions": value, "actions": FAIL}, "conditions must be a list")

    def test_actions_must_be_a_non_empty_list(self):
        self.assertBadRequest({}, "actions", "at least one")
        self.assertBadRequest({"actions": []}, "actions", "at least one")
        for value in (None, {}, "fail"):
            self.assertBadRequest({"actions": value}, "actions must be a list")

    def test_condition_must_be_an_object(self):
        self.assertBadCondition("eq", "conditions[1] must be an object")

    def test_condition_requires_op_and_field(self):
        self.assertBadCondition({"field": "a", "value": 1}, "conditions[1].op", "required")
        self.assertBadCondition({"op": "eq", "value": 1}, "conditions[1].field", "required")

    def test_unknown_op_lists_known_ones(self):
        for op in ("foobar", "EQ", None, ["eq"]):
            e = self.assertBadCondition({"op": op, "field": "a", "value": 1}, "conditions[1].op", "unknown operator")
            for known in CONDITION_OPS:
                self.assertIn(known, e.message)

    def test_field_must_be_a_string(self):
        self.assertBadCondition({"op": "eq", "field": 7, "value": 1}, "conditions[1].field")

    def test_unsupported_scheme(self):
        for field in ("http://a.b", "Data://a", "port://address"):
            self.assertBadCondition({"op": "eq", "field": field, "value": 1}, "conditions[1].field",
                                    "unsupported scheme", "node://", "data://")

    def test_supported_schemes(self):
        rule = rule_with([{"op": "eq", "field": f, "value": 1} for f in ("a", "data://a", "node://driver")])
        self.assertEqual([c["field"] for c in rule["conditions"]], ["a", "data://a", "node://driver"])

    def test_unparsable_json_path(self):
        for field in ("!*!", "", "data://", "node://a[", "a..", "foo bar"):
            self.assertBadCondition({"op": "eq", "field": field, "value": 1}, "conditions[1].field",
                                    "unable to parse field JSON path")

    def test_multiple_must_be_any_all_or_first(self):
        for value in ("some", None, 1, ["any"]):
            self.assertBadCondition({"op": "eq", "field": "a", "value": 1, "multiple": value},
                                    "conditions[1].multiple")

    def test_invert_must_be_a_boolean(self):
        for value in ("true", 1, 0, None):
            self.assertBadCondition({"op": "eq", "field": "a", "value": 1, "invert": value}, "conditions[1].invert")

    def test_defaults_filled_and_params_kept(self):
        rule = rule_with([
            {"op": "eq", "field": "a", "value": 1},
            {"op": "eq", "field": "a", "value": 1, "multiple": "all", "invert": True},
            {"op": "is-empty", "field": "b", "note": None},
        ])
        self.assertEqual(rule["conditions"], [
            {"op": "eq", "field": "a", "multiple": "any", "invert": False, "value": 1},
            {"op": "eq", "field": "a", "multiple": "all", "invert": True, "value": 1},
            {"op": "is-empty", "field": "b", "multiple": "any", "invert": False, "note": None},
        ])

    def test_value_operators_require_value(self):
        for op in ("eq", "ne", "lt", "gt", "le", "ge", "in-net", "matches", "contains"):
            for condition in ({"op": op, "field": "a"}, {"op": op, "field": "a", "value": None}):
                self.assertBadCondition(condition, "operator " + op, "conditions[1]",
                                        "missing required parameter(s): value")

    def test_unexpected_parameters(self):
        self.assertBadCondition({"op": "eq", "field": "a", "value": 1, "foo": "bar"},
                                "operator eq", "conditions[1]", "unexpected parameter(s): foo")
        self.assertBadCondition({"op": "is-empty", "field": "a", "value": 1},
                                "operator is-empty", "unexpected parameter(s): value")

    def test_regex_operators_keep_extra_parameters(self):
        """Upstream does not check extra parameters of matches/contains."""
        rule = rule_with([{"op": "matches", "field": "a", "value": "x", "flags": "i"}])
        self.assertEqual(rule["conditions"][0]["flags"], "i")

    def test_invalid_regex(self):
        for op in ("matches", "contains"):
            for value in ("**", "(", "[a-"):
                self.assertBadCondition({"op": op, "field": "a", "value": value},
                                        "operator " + op, "invalid regular expression")
            self.assertBadCondition({"op": op, "field": "a", "value": 42}, "invalid regular expression")

    def test_invalid_network(self):
        for value in ("foo", "192.0.2.0/33", "10/8", "", 167772160):
            self.assertBadCondition({"op": "in-net", "field": "a", "value": value}, "operator in-net", "invalid value")

    def test_valid_networks(self):
        values = ["192.0.2.1/24", "192.0.2.1", "10.0.0.0/255.0.0.0", "fd00::/8"]
        rule = rule_with([{"op": "in-net", "field": "a", "value": v} for v in values])
        self.assertEqual([c["value"] for c in rule["conditions"]], values)

    def test_action_must_be_an_object(self):
        self.assertBadAction("fail", "actions[1] must be an object")

    def test_action_name_required(self):
        self.assertBadAction({"message": "x"}, "actions[1].action", "required")

    def test_unknown_action_lists_known_ones(self):
        for name in ("foobar", None, 1):
            e = self.assertBadAction({"action": name}, "actions[1].action", "unknown action")
            for known in ACTION_NAMES:
                self.assertIn(known, e.message)

    def test_action_required_parameters(self):
        cases = [
            ({"action": "fail"}, "message"),
            ({"action": "fail", "message": None}, "message"),
            ({"action": "set-attribute", "value": 1}, "path"),
            ({"action": "set-attribute", "path": "/extra/a"}, "value"),
            ({"action": "set-capability", "value": 1}, "name"),
            ({"action": "extend-attribute", "path": "/extra/a"}, "value"),
            ({"action": "extend-attribute", "path": "/extra/a", "value": None}, "value"),
            ({"action": "extend-attribute", "value": 1}, "path"),
            ({"action": "add-trait"}, "name"),
            ({"action": "remove-trait"}, "name"),
        ]
        for action, missing in cases:
            self.assertBadAction(action, "action " + action["action"], "actions[1]",
                                 "missing required parameter(s): " + missing)

    def test_action_unexpected_parameters(self):
        cases = [
            {"action": "fail", "message": "x", "value": 1},
            {"action": "set-attribute", "path": "/extra/a", "value": 1, "unique": True},
            {"action": "set-capability", "name": "x", "path": "/a"},
            {"action": "extend-attribute", "path": "/extra/a", "value": 1, "name": "x"},
            {"action": "add-trait", "name": "CUSTOM_A", "value": 42},
            {"action": "remove-trait", "name": "CUSTOM_A", "value": 42},
        ]
        for action in cases:
            self.assertBadAction(action, "action " + action["action"], "actions[1]", "unexpected parameter(s)")

    def test_bad_parameter_types(self):
        cases = [
            ({"action": "set-attribute", "path": 42, "value": 1}, "path"),
            ({"action": "set-attribute", "path": "/", "value": 1}, "path"),
            ({"action": "extend-attribute", "path": ["extra"], "value": 1}, "path"),
            ({"action": "set-capability", "name": 42, "value": 1}, "name"),
            ({"action": "add-trait", "name": ""}, "name"),
            ({"action": "remove-trait", "name": {"a": 1}}, "name"),
        ]
        for action, param in cases:
            self.assertBadAction(action, "action " + action["action"], "actions[1]", param)

    def test_valid_actions_are_kept_as_given(self):
        actions = [
            {"action": "set-attribute", "path": "/extra/cpus", "value": None},
            {"action": "set-attribute", "path": "driver", "value": "ipmi", "reset_interfaces": False},
            {"action": "set-capability", "name": "x"},
            {"action": "extend-attribute", "path": "/extra/tags", "value": "t", "unique": True},
            {"action": "add-trait", "name": "CUSTOM_A"},
            {"action": "remove-trait", "name": "CUSTOM_B"},
            {"action": "fail", "message": "boom"},
        ]
        self.assertEqual(rule_with(actions=actions)["actions"], actions)

    def test_body_is_not_changed(self):
        body = {"conditions": [{"op": "eq", "field": "a", "value": 1}], "actions": FAIL}
        before = copy.deepcopy(body)
        rules.validate(body)
        self.assertEqual(body, before)


class AsDictTests(SynchronousTestCase):
    def test_short(self):
        rule = rule_with([{"op": "eq", "field": "a", "value": 1}], uuid=RULE_UUID, description="d", scope="s")
        self.assertEqual(rules.as_dict(rule, short=True), {"uuid": RULE_UUID, "description": "d", "scope": "s"})

    def test_full_fills_defaults(self):
        """Upstream returns multiple and invert on every condition."""
        body = {"uuid": RULE_UUID, "conditions": [{"op": "eq", "field": "memory_mb", "value": 1024},
                                                  {"op": "is-empty", "field": "x", "invert": True}],
                "actions": [{"action": "set-capability", "name": "c", "value": 1}]}
        self.assertEqual(rules.as_dict(rules.validate(body)), {
            "uuid": RULE_UUID,
            "description": None,
            "scope": None,
            "conditions": [
                {"op": "eq", "field": "memory_mb", "value": 1024, "multiple": "any", "invert": False},
                {"op": "is-empty", "field": "x", "multiple": "any", "invert": True},
            ],
            "actions": [{"action": "set-capability", "name": "c", "value": 1}],
        })

    def test_full_fills_defaults_of_stored_rules(self):
        stored = {"uuid": RULE_UUID, "description": None, "scope": None,
                  "conditions": [{"op": "eq", "field": "a", "value": 1}], "actions": FAIL}
        self.assertEqual(rules.as_dict(stored)["conditions"],
                         [{"op": "eq", "field": "a", "value": 1, "multiple": "any", "invert": False}])

    def test_returns_a_copy(self):
        rule = rule_with([{"op": "eq", "field": "a", "value": [1]}])
        shown = rules.as_dict(rule)
        shown["conditions"][0]["value"].append(2)
        shown["actions"].append({"action": "add-trait", "name": "X"})
        self.assertEqual(rule["conditions"][0]["value"], [1])
        self.assertEqual(rule["actions"], FAIL)


# ironic-inspector's table: (field, rule value) for eq, ne, gt, ge, le, lt.
COMPARISONS = [(42, 42), ("42", 42), ("4.2", 4.2), (42, 41), ("42", 41), ("4.2", 4.0), (41, 42), ("41", 42),
               ("4.0", 4.2)]


class ComparisonTests(SynchronousTestCase):
    def check_table(self, op, expected):
        for (field, value), result in zip(COMPARISONS, expected):
            self.assertIs(holds({"op": op, "field": "f", "value": value}, {"f": field}), result,
                          "{!r} {} {!r}".format(field, op, value))

    def test_eq(self):
        self.check_table("eq", [True] * 3 + [False] * 6)

    def test_ne(self):
        self.check_table("ne", [False] * 3 + [True] * 6)

    def test_gt(self):
        self.check_table("gt", [False] * 3 + [True] * 3 + [False] * 3)

    def test_ge(self):
        self.check_table("ge", [True] * 6 + [False] * 3)

    def test_le(self):
        self.check_table("le", [True] * 3 + [False] * 3 + [True] * 3)

    def test_lt(self):
        self.check_table("lt", [False] * 6 + [True] * 3)

    def test_strings(self):
        self.assertTrue(holds({"op": "eq", "field": "f", "value": "foo"}, {"f": "foo"}))
        self.assertFalse(holds({"op": "eq", "field": "f", "value": "foo"}, {"f": "bar"}))
        self.assertTrue(holds({"op": "ne", "field": "f", "value": "foo"}, {"f": "bar"}))
        self.assertTrue(holds({"op": "lt", "field": "f", "value": "b"}, {"f": "a"}))

    def test_int_value_truncates_float_field(self):
        """As upstream: an int rule value compares int(field)."""
        self.assertTrue(holds({"op": "eq", "field": "f", "value": 4}, {"f": 4.7}))
        self.assertFalse(holds({"op": "gt", "field": "f", "value": 4}, {"f": 4.7}))

    def test_float_value_converts_field(self):
        self.assertTrue(holds({"op": "gt", "field": "f", "value": 4.5}, {"f": "4.7"}))

    def test_uncomparable_values(self):
        """A field that cannot be converted is compared as is; no order means false."""
        self.assertFalse(holds({"op": "eq", "field": "f", "value": 1}, {"f": "abc"}))
        self.assertTrue(holds({"op": "ne", "field": "f", "value": 1}, {"f": "abc"}))
        for op in ("lt", "gt", "le", "ge"):
            self.assertFalse(holds({"op": op, "field": "f", "value": 1}, {"f": "abc"}), op)
            self.assertFalse(holds({"op": op, "field": "f", "value": 1}, {"f": None}), op)
            self.assertFalse(holds({"op": op, "field": "f", "value": "5"}, {"f": 3}), op)

    def test_structured_values(self):
        self.assertTrue(holds({"op": "eq", "field": "f", "value": ["a", "b"]}, {"f": ["a", "b"]}))
        self.assertTrue(holds({"op": "eq", "field": "f", "value": {"a": 1}}, {"f": {"a": 1}}))
        self.assertFalse(holds({"op": "eq", "field": "f", "value": ["a"]}, {"f": ["a", "b"]}))


class NetworkTests(SynchronousTestCase):
    def test_in_net(self):
        cases = [
            ("192.0.2.4", "192.0.2.1/24", True),
            ("192.1.2.4", "192.0.2.1/24", False),
            ("10.9.8.7", "10.0.0.0/255.0.0.0", True),
            ("192.0.2.1", "192.0.2.1", True),
            ("192.0.2.2", "192.0.2.1", False),
            ("fd00::2", "fd00::/8", True),
            ("fe80::1%eth0", "fe80::/10", True),
            ("2001:db8::1", "fd00::/8", False),
        ]
        for field, network, result in cases:
            self.assertIs(holds({"op": "in-net", "field": "f", "value": network}, {"f": field}), result,
                          "{} in {}".format(field, network))

    def test_other_ip_version_is_not_in_network(self):
        self.assertFalse(holds({"op": "in-net", "field": "f", "value": "::/0"}, {"f": "192.0.2.4"}))
        self.assertFalse(holds({"op": "in-net", "field": "f", "value": "0.0.0.0/0"}, {"f": "::1"}))

    def test_not_an_address_is_not_in_network(self):
        for field in (None, "", "foo", "192.0.2.4/24", True, [], {"ip": "192.0.2.4"}):
            self.assertFalse(holds({"op": "in-net", "field": "f", "value": "0.0.0.0/0"}, {"f": field}), field)

    def test_integer_address(self):
        self.assertTrue(holds({"op": "in-net", "field": "f", "value": "192.0.2.0/24"}, {"f": 3221225988}))


class RegexTests(SynchronousTestCase):
    def test_matches_whole_value(self):
        cases = [(r".*", "foo", True), (r"fo{1,2}", "foo", True), (r"o{1,2}", "foo", False),
                 (r"[1-9]*", 42, True), (r"^(foo|bar)$", "foo", True), (r"fo", "foo", False),
                 (r"fo|x", "foox", False), (r"", "", True), (r"foo$", "foo\n", False)]
        for regex, field, result in cases:
            self.assertIs(holds({"op": "matches", "field": "f", "value": regex}, {"f": field}), result,
                          "{!r} matches {!r}".format(regex, field))

    def test_contains(self):
        cases = [(r".*", "foo", True), (r"fo{1,2}", "foo", True), (r"o{1,2}", "foo", True),
                 (r"[1-9]*", 42, True), (r"bar", "foo", False), (r"^oo", "foo", False)]
        for regex, field, result in cases:
            self.assertIs(holds({"op": "contains", "field": "f", "value": regex}, {"f": field}), result,
                          "{!r} in {!r}".format(regex, field))

    def test_non_strings_are_matched_as_text(self):
        """Like upstream, the field's str(): None is "None", a list its repr."""
        self.assertTrue(holds({"op": "matches", "field": "f", "value": "None"}, {"f": None}))
        self.assertTrue(holds({"op": "contains", "field": "f", "value": "'avx2'"}, {"f": ["sse", "avx2"]}))


class IsEmptyTests(SynchronousTestCase):
    def test_empty_values(self):
        for value in (None, "", [], {}):
            self.assertTrue(holds({"op": "is-empty", "field": "f"}, {"f": value}), value)

    def test_non_empty_values(self):
        for value in (0, 0.0, False, "16", ["16"], {"test": "16"}, " "):
            self.assertFalse(holds({"op": "is-empty", "field": "f"}, {"f": value}), value)

    def test_missing_field_is_empty(self):
        self.assertTrue(holds({"op": "is-empty", "field": "a.b.c"}, {"a": {}}))
        self.assertFalse(holds({"op": "is-empty", "field": "a.b.c", "invert": True}, {"a": {}}))


class CheckTests(SynchronousTestCase):
    data = {"memory_mb": 1024, "local_gb": 42, "interfaces": [{"ip": "1.1.1.1"}, {"ip": "1.2.3.4"}]}

    def test_no_conditions_always_applies(self):
        self.assertTrue(rules.check(rule_with([]), make_node(), {}))

    def test_every_condition_must_hold(self):
        eq_memory = {"op": "eq", "field": "memory_mb", "value": 1024}
        self.assertTrue(rules.check(rule_with([eq_memory, {"op": "eq", "field": "local_gb", "value": 42}]),
                                    make_node(), self.data))
        self.assertFalse(rules.check(rule_with([eq_memory, {"op": "eq", "field": "local_gb", "value": 60}]),
                                     make_node(), self.data))
        self.assertFalse(rules.check(rule_with([{"op": "eq", "field": "local_gb", "value": 60}, eq_memory]),
                                     make_node(), self.data))

    def test_missing_field_means_no_match(self):
        """Upstream: a missing field stops the rule, whatever the operator or invert."""
        for op in ("eq", "ne", "lt", "matches", "contains"):
            value = ".*" if op in ("matches", "contains") else 1
            self.assertFalse(holds({"op": op, "field": "nope", "value": value}, self.data), op)
            self.assertFalse(holds({"op": op, "field": "nope", "value": value, "invert": True}, self.data), op)
        self.assertFalse(holds({"op": "in-net", "field": "nope", "value": "0.0.0.0/0", "invert": True}, self.data))

    def test_null_field_is_found(self):
        """A field present with null is checked, unlike a missing one."""
        self.assertTrue(holds({"op": "ne", "field": "f", "value": "x"}, {"f": None}))
        self.assertTrue(holds({"op": "eq", "field": "f", "value": "x", "invert": True}, {"f": None}))

    def test_invert(self):
        self.assertTrue(holds({"op": "eq", "field": "memory_mb", "value": 42, "invert": True}, self.data))
        self.assertFalse(holds({"op": "eq", "field": "memory_mb", "value": 1024, "invert": True}, self.data))

    def test_json_path_syntax(self):
        cases = [
            ("$.memory_mb", 1024),
            ("interfaces[1].ip", "1.2.3.4"),
            ("interfaces[-1].ip", "1.2.3.4"),
            ("$..ip", "1.2.3.4"),
            ("data://interfaces[*].ip", "1.2.3.4"),
        ]
        for field, value in cases:
            self.assertTrue(holds({"op": "eq", "field": field, "value": value}, self.data), field)
            self.assertFalse(holds({"op": "eq", "field": field, "value": "other"}, self.data), field)

    def test_unknown_stored_operator(self):
        rule = rule_with([])
        rule["conditions"] = [{"op": "future-op", "field": "a", "value": 1}]
        e = self.assertRaises(errors.ProcessingError, rules.check, rule, make_node(), {"a": 1})
        self.assertIn("future-op", e.message)

    def test_stored_condition_without_defaults(self):
        rule = rule_with([])
        rule["conditions"] = [{"op": "eq", "field": "interfaces[*].ip", "value": "1.2.3.4"}]
        self.assertTrue(rules.check(rule, make_node(), self.data))


class MultipleTests(SynchronousTestCase):
    """ironic-inspector's data sets for multiple: any, all, first."""

    DATA_SETS = [["1.1.1.1", "1.2.3.4", "1.3.2.2"], ["1.2.3.4"], ["1.1.1.1", "1.3.2.2"], ["1.2.3.4", "1.3.2.2"]]

    def results(self, invert=False, **multiple):
        condition = dict({"op": "eq", "field": "interfaces[*].ip", "value": "1.2.3.4", "invert": invert}, **multiple)
        rule = rule_with([condition])
        return [rules.check(rule, make_node(), {"interfaces": [{"ip": ip} for ip in ips]}) for ips in self.DATA_SETS]

    def test_default_is_any(self):
        self.assertEqual(self.results(), [True, True, False, True])

    def test_any(self):
        self.assertEqual(self.results(multiple="any"), [True, True, False, True])

    def test_all(self):
        self.assertEqual(self.results(multiple="all"), [False, True, False, False])

    def test_first(self):
        self.assertEqual(self.results(multiple="first"), [False, True, False, True])

    def test_invert_applies_to_each_value(self):
        """Inverted: any value differs / all values differ / the first differs."""
        self.assertEqual(self.results(invert=True, multiple="any"), [True, False, True, True])
        self.assertEqual(self.results(invert=True, multiple="all"), [False, False, True, False])
        self.assertEqual(self.results(invert=True, multiple="first"), [True, False, True, False])


class FieldSchemeTests(SynchronousTestCase):
    data = {"driver": "from-data", "memory_mb": 1024}

    def test_no_scheme_reads_data(self):
        self.assertTrue(holds({"op": "eq", "field": "driver", "value": "from-data"}, self.data))
        self.assertTrue(holds({"op": "eq", "field": "data://driver", "value": "from-data"}, self.data))

    def test_node_scheme_reads_node(self):
        self.assertTrue(holds({"op": "eq", "field": "node://driver", "value": "ipmi"}, self.data))
        self.assertFalse(holds({"op": "eq", "field": "node://driver", "value": "from-data"}, self.data))
        self.assertTrue(holds({"op": "in-net", "field": "node://driver_info.ipmi_address", "value": "10.0.0.0/8"},
                              self.data))
        self.assertTrue(holds({"op": "eq", "field": "node://uuid", "value": NODE_UUID}, self.data))

    def test_node_field_missing(self):
        self.assertFalse(holds({"op": "eq", "field": "node://memory_mb", "value": 1024}, self.data))
        self.assertTrue(holds({"op": "is-empty", "field": "node://extra.foo"}, self.data))

    def test_node_scheme_sees_pending_changes(self):
        """Changes recorded by hooks (or earlier rules) are part of the node."""
        node = make_node()
        node.update_properties(cpus="8")
        node.patch([{"op": "add", "path": "/extra/rack", "value": "r1"}])
        node.add_trait("CUSTOM_NEW")
        data = {}
        self.assertTrue(holds({"op": "eq", "field": "node://properties.cpus", "value": 8}, data, node))
        self.assertTrue(holds({"op": "eq", "field": "node://extra.rack", "value": "r1"}, data, node))
        self.assertTrue(holds({"op": "eq", "field": "node://traits[*]", "value": "CUSTOM_NEW"}, data, node))
        self.assertTrue(holds({"op": "eq", "field": "node://traits[*]", "value": "CUSTOM_OLD"}, data, node))

    def test_openstacksdk_field_names(self):
        """Upstream read node:// from openstacksdk: id, is_maintenance... work too."""
        node = make_node(maintenance=True, instance_uuid=None)
        self.assertTrue(holds({"op": "eq", "field": "node://id", "value": NODE_UUID}, {}, node))
        self.assertTrue(holds({"op": "eq", "field": "node://is_maintenance", "value": True}, {}, node))
        self.assertTrue(holds({"op": "is-empty", "field": "node://instance_id"}, {}, node))
        self.assertFalse(holds({"op": "eq", "field": "node://id", "value": RULE_UUID}, {}, node))


class ScopeTests(SynchronousTestCase):
    def node(self, scope=None):
        properties = {} if scope is None else {"inspection_scope": scope}
        return make_node(properties=properties)

    def test_global_rule_applies_everywhere(self):
        for scope in (None, "scope_1"):
            self.assertTrue(rules.check(rule_with(), self.node(scope), {}))
        self.assertTrue(rules.check(rule_with(scope=""), self.node("scope_1"), {}))

    def test_scoped_rule(self):
        rule = rule_with(scope="scope_1")
        self.assertTrue(rules.check(rule, self.node("scope_1"), {}))
        self.assertFalse(rules.check(rule, self.node("scope_2"), {}))
        self.assertFalse(rules.check(rule, self.node(), {}))

    def test_scope_checked_before_conditions(self):
        rule = rule_with([{"op": "eq", "field": "a", "value": 1}], scope="scope_1")
        self.assertFalse(rules.check(rule, self.node("scope_2"), {"a": 1}))
        self.assertFalse(rules.check(rule, self.node("scope_1"), {"a": 2}))
        self.assertTrue(rules.check(rule, self.node("scope_1"), {"a": 1}))

    def test_pending_scope_counts(self):
        node = self.node()
        node.update_properties(inspection_scope="scope_1")
        self.assertTrue(rules.check(rule_with(scope="scope_1"), node, {}))


class ActionTests(SynchronousTestCase):
    def run_actions(self, actions, node=None, data=None):
        node = node or make_node()
        rules.apply(rule_with(actions=actions), node, data or {})
        return node

    def test_fail(self):
        e = self.assertRaises(errors.ProcessingError, self.run_actions, [{"action": "fail", "message": "boom!"}])
        self.assertEqual(e.message, "boom!")

    def test_actions_run_in_order_and_stop_at_fail(self):
        node = make_node()
        self.assertRaises(errors.ProcessingError, self.run_actions, [
            {"action": "add-trait", "name": "CUSTOM_BEFORE"},
            {"action": "fail", "message": "boom!"},
            {"action": "add-trait", "name": "CUSTOM_AFTER"},
        ], node)
        self.assertEqual(node.update.added_traits, {"CUSTOM_BEFORE"})

    def test_set_attribute(self):
        node = self.run_actions([{"action": "set-attribute", "path": "/driver_info/ipmi_address", "value": "10.9.9.9"},
                                 {"action": "set-attribute", "path": "/extra/rack", "value": {"row": 3}}])
        self.assertEqual(node.update.node_patch, [
            {"op": "add", "path": "/driver_info/ipmi_address", "value": "10.9.9.9"},
            {"op": "add", "path": "/extra/rack", "value": {"row": 3}},
        ])
        view = node.view()
        self.assertEqual(view["driver_info"], {"ipmi_address": "10.9.9.9", "ipmi_username": "admin"})
        self.assertEqual(view["extra"], {"rack": {"row": 3}})

    def test_set_attribute_adds_leading_slash(self):
        node = self.run_actions([{"action": "set-attribute", "path": "driver", "value": "redfish"}])
        self.assertEqual(node.update.node_patch, [{"op": "add", "path": "/driver", "value": "redfish"}])
        self.assertEqual(node.view()["driver"], "redfish")

    def test_set_attribute_null(self):
        node = self.run_actions([{"action": "set-attribute", "path": "/properties/cpus", "value": None}])
        self.assertEqual(node.update.node_patch, [{"op": "add", "path": "/properties/cpus", "value": None}])

    def test_set_capability(self):
        node = make_node(properties={"capabilities": "x:y,cap1:old_val,answer:42"})
        self.run_actions([{"action": "set-capability", "name": "cap1", "value": "val"},
                          {"action": "set-capability", "name": "new", "value": 7}], node)
        caps = parse_capabilities(node.update.properties["capabilities"])
        self.assertEqual(caps, {"x": "y", "cap1": "val", "answer": "42", "new": "7"})
        self.assertEqual(parse_capabilities(node.view()["properties"]["capabilities"]), caps)

    def test_set_capability_without_value_removes_it(self):
        node = make_node(properties={"capabilities": "x:y,cap1:old_val"})
        self.run_actions([{"action": "set-capability", "name": "cap1"}], node)
        self.assertEqual(node.update.properties, {"capabilities": "x:y"})
        node = make_node(properties={"capabilities": "x:y"})
        self.run_actions([{"action": "set-capability", "name": "cap1", "value": None}], node)
        self.assertEqual(node.update.properties, {})

    def test_extend_attribute_creates_list(self):
        node = self.run_actions([{"action": "extend-attribute", "path": "/extra/value", "value": 42}])
        self.assertEqual(node.update.node_patch, [{"op": "add", "path": "/extra/value", "value": [42]}])

    def test_extend_attribute_appends(self):
        node = self.run_actions([{"action": "extend-attribute", "path": "extra/value", "value": 42}],
                                make_node(extra={"value": [0]}))
        self.assertEqual(node.update.node_patch, [{"op": "add", "path": "/extra/value", "value": [0, 42]}])

    def test_extend_attribute_sees_earlier_actions(self):
        node = self.run_actions([{"action": "extend-attribute", "path": "/extra/tags", "value": "a"},
                                 {"action": "extend-attribute", "path": "/extra/tags", "value": "b"},
                                 {"action": "extend-attribute", "path": "/extra/tags", "value": "a"}])
        self.assertEqual(node.view()["extra"]["tags"], ["a", "b", "a"])

    def test_extend_attribute_unique(self):
        node = self.run_actions([{"action": "extend-attribute", "path": "/extra/value", "value": 42, "unique": True}],
                                make_node(extra={"value": [42]}))
        self.assertEqual(node.update.node_patch, [])
        node = self.run_actions([{"action": "extend-attribute", "path": "/extra/value", "value": 1, "unique": True}],
                                make_node(extra={"value": [42]}))
        self.assertEqual(node.update.node_patch, [{"op": "add", "path": "/extra/value", "value": [42, 1]}])

    def test_extend_attribute_nested_path(self):
        node = self.run_actions([{"action": "extend-attribute", "path": "/extra/a/b", "value": 1}],
                                make_node(extra={"a": {"b": [0]}}))
        self.assertEqual(node.update.node_patch, [{"op": "add", "path": "/extra/a/b", "value": [0, 1]}])
        self.assertEqual(node.view()["extra"], {"a": {"b": [0, 1]}})

    def test_extend_attribute_not_a_list(self):
        node = make_node(extra={"value": "text"})
        e = self.assertRaises(errors.ProcessingError, self.run_actions,
                              [{"action": "extend-attribute", "path": "/extra/value", "value": 1}], node)
        self.assertIn("/extra/value", e.message)
        self.assertEqual(node.update.node_patch, [])

    def test_traits(self):
        node = self.run_actions([{"action": "add-trait", "name": "CUSTOM_FOO"},
                                 {"action": "remove-trait", "name": "CUSTOM_OLD"}])
        self.assertEqual(node.update.added_traits, {"CUSTOM_FOO"})
        self.assertEqual(node.update.removed_traits, {"CUSTOM_OLD"})
        self.assertEqual(node.view()["traits"], ["CUSTOM_FOO"])

    def test_unknown_stored_action(self):
        rule = rule_with()
        rule["actions"] = [{"action": "reboot"}]
        e = self.assertRaises(errors.ProcessingError, rules.apply, rule, make_node(), {})
        self.assertIn("reboot", e.message)


class FormattingTests(SynchronousTestCase):
    data = {"memory_mb": 1024, "inventory": {"bmc_address": "192.0.2.200", "interfaces": [{"name": "eth0"}]},
            "outer": {"inner": False}, "key_outer": {"key_inner": "baz"}, "val_outer": {"val_inner": 17}}

    def set_value(self, value):
        node = make_node()
        rules.apply(rule_with(actions=[{"action": "set-attribute", "path": "/extra/foo", "value": value}]),
                    node, self.data)
        return node.update.node_patch[0]["value"]

    def test_string(self):
        node = make_node()
        rule = rule_with(actions=[{"action": "set-attribute", "path": "/driver_info/ipmi_address",
                                   "value": "{data[inventory][bmc_address]}"}])
        rules.apply(rule, node, self.data)
        self.assertEqual(node.view()["driver_info"]["ipmi_address"], "192.0.2.200")
        self.assertEqual(rule["actions"][0]["value"], "{data[inventory][bmc_address]}")

    def test_list_index_and_text(self):
        self.assertEqual(self.set_value("{data[inventory][interfaces][0][name]}-{data[memory_mb]}"), "eth0-1024")

    def test_containers_and_primitives(self):
        """Dict keys and values, nested lists; formatted values become strings."""
        self.assertEqual(self.set_value({"{data[key_outer][key_inner]}": "{data[val_outer][val_inner]}"}),
                         {"baz": "17"})
        self.assertEqual(self.set_value(["basic", ["{data[key_outer][key_inner]}"]]), ["basic", ["baz"]])
        self.assertEqual(self.set_value({"n": [3.14, 42, True, None, "{data[outer][inner]}"]}),
                         {"n": [3.14, 42, True, None, "False"]})

    def test_bad_key(self):
        for value in ("{data[inventory][nope]}", ["basic", ["{data[outer][nonexistent]}"]],
                      {"{data[missing]}": 1}):
            e = self.assertRaises(errors.ProcessingError, self.set_value, value)
            self.assertIn("Invalid formatting variable key", e.message)
            self.assertIn("{data[", e.message)

    def test_other_format_errors(self):
        for value in ("{data[inventory][interfaces][5]}", "{data[memory_mb][x]}", "{", "{0}", "{data.nope}"):
            e = self.assertRaises(errors.ProcessingError, self.set_value, value)
            self.assertIn(repr(value), e.message)

    def test_formatted_in_capability_and_extend(self):
        node = make_node()
        rules.apply(rule_with(actions=[
            {"action": "set-capability", "name": "bmc", "value": "{data[inventory][bmc_address]}"},
            {"action": "extend-attribute", "path": "/extra/nics", "value": "{data[inventory][interfaces][0][name]}"},
        ]), node, self.data)
        self.assertEqual(parse_capabilities(node.update.properties["capabilities"])["bmc"], "192.0.2.200")
        self.assertEqual(node.view()["extra"]["nics"], ["eth0"])

    def test_only_values_are_formatted(self):
        """As upstream: fail messages, paths, names and traits are literal."""
        node = make_node()
        rules.apply(rule_with(actions=[
            {"action": "set-attribute", "path": "/extra/{data[memory_mb]}", "value": 1},
            {"action": "set-capability", "name": "{data[memory_mb]}", "value": 1},
            {"action": "add-trait", "name": "CUSTOM_{data[memory_mb]}"},
        ]), node, self.data)
        self.assertEqual(node.update.node_patch[0]["path"], "/extra/{data[memory_mb]}")
        self.assertIn("{data[memory_mb]}", parse_capabilities(node.update.properties["capabilities"]))
        self.assertEqual(node.update.added_traits, {"CUSTOM_{data[memory_mb]}"})
        e = self.assertRaises(errors.ProcessingError, rules.apply,
                              rule_with(actions=[{"action": "fail", "message": "{data[memory_mb]}"}]), node, self.data)
        self.assertEqual(e.message, "{data[memory_mb]}")


class ApplyAllTests(SynchronousTestCase):
    def test_applies_matching_rules_in_order(self):
        first = rule_with([{"op": "eq", "field": "a", "value": 1}],
                          [{"action": "extend-attribute", "path": "/extra/order", "value": "first"}])
        skipped = rule_with([{"op": "eq", "field": "a", "value": 2}],
                            [{"action": "extend-attribute", "path": "/extra/order", "value": "skipped"}])
        last = rule_with([], [{"action": "extend-attribute", "path": "/extra/order", "value": "last"}])
        node = make_node()
        applied = rules.apply_all([first, skipped, last], node, {"a": 1})
        self.assertEqual(applied, [first["uuid"], last["uuid"]])
        self.assertEqual(node.view()["extra"]["order"], ["first", "last"])

    def test_no_rules(self):
        node = make_node()
        self.assertEqual(rules.apply_all([], node, {}), [])
        self.assertTrue(node.update.empty)

    def test_all_rules_checked_before_any_applies(self):
        """As upstream: one rule's actions do not make another one match."""
        adds = rule_with([], [{"action": "add-trait", "name": "CUSTOM_A"}])
        follows = rule_with([{"op": "eq", "field": "node://traits[*]", "value": "CUSTOM_A"}],
                            [{"action": "add-trait", "name": "CUSTOM_B"}])
        node = make_node()
        self.assertEqual(rules.apply_all([adds, follows], node, {}), [adds["uuid"]])
        self.assertEqual(node.update.added_traits, {"CUSTOM_A"})
        # Applied again (reapply), the trait is there and the second rule matches.
        self.assertEqual(rules.apply_all([adds, follows], node, {}), [adds["uuid"], follows["uuid"]])

    def test_failing_rule_raises(self):
        ok = rule_with([], [{"action": "add-trait", "name": "CUSTOM_A"}])
        fails = rule_with([{"op": "eq", "field": "a", "value": 1}], [{"action": "fail", "message": "no a=1 please"}])
        node = make_node()
        e = self.assertRaises(errors.ProcessingError, rules.apply_all, [ok, fails], node, {"a": 1})
        self.assertEqual(e.message, "no a=1 please")
        self.assertEqual(rules.apply_all([ok, fails], make_node(), {"a": 2}), [ok["uuid"]])

    def test_out_of_scope_rules_skipped(self):
        scoped = rule_with([], [{"action": "add-trait", "name": "CUSTOM_S"}], scope="rack-1")
        node = make_node(properties={"inspection_scope": "rack-2"})
        self.assertEqual(rules.apply_all([scoped], node, {}), [])
        self.assertEqual(node.update.added_traits, set())


class IPAPayloadTests(SynchronousTestCase):
    """Rules posted as JSON, run against what a real IPA sent."""

    def setUp(self):
        self.data = fixture("ipa-payload.json")
        self.node = make_node()

    def post(self, text):
        return rules.validate(json.loads(text))

    def test_cpu_count_sets_capability(self):
        rule = self.post("""{"description": "2+ CPUs",
            "conditions": [{"op": "ge", "field": "data://inventory.cpu.count", "value": 2}],
            "actions": [{"action": "set-capability", "name": "cpu_count",
                         "value": "{data[inventory][cpu][count]}"}]}""")
        self.assertEqual(rules.apply_all([rule], self.node, self.data), [rule["uuid"]])
        self.assertEqual(parse_capabilities(self.node.update.properties["capabilities"]),
                         {"boot_mode": "uefi", "cpu_count": "2"})

    def test_cpu_count_too_low(self):
        rule = self.post("""{"conditions": [{"op": "gt", "field": "inventory.cpu.count", "value": 2}],
            "actions": [{"action": "set-capability", "name": "big", "value": "true"}]}""")
        self.assertEqual(rules.apply_all([rule], self.node, self.data), [])
        self.assertTrue(self.node.update.empty)

    def test_interfaces(self):
        rule = self.post("""{"conditions": [
                {"op": "eq", "field": "inventory.interfaces[*].mac_address", "value": "02:fc:00:00:00:01"},
                {"op": "in-net", "field": "$.inventory.interfaces[*].ipv4_address", "value": "192.0.2.0/24",
                 "multiple": "all"},
                {"op": "matches", "field": "inventory.interfaces[*].name", "value": "eth[0-9]+"}],
            "actions": [{"action": "add-trait", "name": "CUSTOM_NET_192"},
                        {"action": "extend-attribute", "path": "/extra/macs", "unique": true,
                         "value": "{data[inventory][interfaces][0][mac_address]}"}]}""")
        self.assertTrue(rules.check(rule, self.node, self.data))
        rules.apply(rule, self.node, self.data)
        self.assertEqual(self.node.update.added_traits, {"CUSTOM_NET_192"})
        self.assertEqual(self.node.view()["extra"]["macs"], ["02:fc:00:00:00:01"])

    def test_other_network(self):
        rule = self.post("""{"conditions": [{"op": "in-net", "field": "inventory.interfaces[*].ipv4_address",
            "value": "10.0.0.0/8"}], "actions": [{"action": "fail", "message": "wrong network"}]}""")
        self.assertFalse(rules.check(rule, self.node, self.data))

    def test_cpu_flags(self):
        contains = self.post("""{"conditions": [{"op": "contains", "field": "inventory.cpu.flags",
            "value": "'avx512f'"}], "actions": [{"action": "add-trait", "name": "CUSTOM_AVX512"}]}""")
        each = self.post("""{"conditions": [{"op": "matches", "field": "inventory.cpu.flags[*]",
            "value": "avx512f"}], "actions": [{"action": "add-trait", "name": "CUSTOM_AVX512"}]}""")
        missing = self.post("""{"conditions": [{"op": "eq", "field": "inventory.cpu.flags[*]",
            "value": "sve"}], "actions": [{"action": "add-trait", "name": "CUSTOM_SVE"}]}""")
        self.assertEqual(rules.apply_all([contains, each, missing], self.node, self.data),
                         [contains["uuid"], each["uuid"]])
        self.assertEqual(self.node.update.added_traits, {"CUSTOM_AVX512"})

    def test_missing_bmc_fails_introspection(self):
        """The fixture's VM has no BMC: bmc_address is null, so is-empty holds."""
        rule = self.post("""{"conditions": [{"op": "is-empty", "field": "inventory.bmc_address"}],
            "actions": [{"action": "fail", "message": "no BMC address"}]}""")
        e = self.assertRaises(errors.ProcessingError, rules.apply_all, [rule], self.node, self.data)
        self.assertEqual(e.message, "no BMC address")

    def test_root_disk_and_memory(self):
        rule = self.post("""{"conditions": [
                {"op": "eq", "field": "root_disk.name", "value": "/dev/vda"},
                {"op": "ge", "field": "inventory.memory.physical_mb", "value": 16384},
                {"op": "eq", "field": "inventory.disks[*].rotational", "value": true, "multiple": "all"}],
            "actions": [{"action": "set-attribute", "path": "/properties/root_device",
                         "value": {"name": "{data[root_disk][name]}"}}]}""")
        self.assertEqual(rules.apply_all([rule], self.node, self.data), [rule["uuid"]])
        self.assertEqual(self.node.view()["properties"]["root_device"], {"name": "/dev/vda"})
