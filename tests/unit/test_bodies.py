"""The strict JSON parser of request bodies (inspectord.api.bodies)."""

import json

from twisted.trial.unittest import SynchronousTestCase

from inspectord import errors
from inspectord.api import bodies


class SurrogateTests(SynchronousTestCase):
    """Lone surrogates are refused however they are written; other bodies skip the string walk."""

    def assertRefused(self, raw):
        e = self.assertRaises(errors.InvalidInput, bodies.parse_json, raw)
        self.assertIn("surrogate", e.message)

    def test_escaped_in_a_value(self):
        self.assertRefused(b'{"a": ["x", "\\ud800"]}')

    def test_escaped_upper_case_in_a_key(self):
        self.assertRefused(b'{"\\uDC00": 1}')

    def test_encoded_in_utf8_bytes(self):
        # json.loads decodes bytes with surrogatepass: the surrogate arrives unescaped.
        self.assertRefused(b'{"a": "\xed\xa0\x80"}')

    def test_encoded_in_utf16_bytes(self):
        self.assertRefused('{"a": "\ud800"}'.encode("utf-16", "surrogatepass"))

    def test_in_a_str_body(self):
        self.assertRefused('{"a": "\ud800"}')

    def test_pair_is_accepted(self):
        self.assertEqual(bodies.parse_json(b'{"a": "\\uD83D\\uDE00"}'), {"a": "\U0001F600"})

    def test_ascii_body_without_escape_skips_strings(self):
        self.assertFalse(bodies._may_hold_surrogate(b'{"a": "\\u00e9", "b": [1, 2.5]}'))
        self.assertTrue(bodies._may_hold_surrogate(b'{"a": "\\ud800"}'))
        self.assertTrue(bodies._may_hold_surrogate('{"a": 1}'))
        self.assertTrue(bodies._may_hold_surrogate('{"a": "é"}'.encode()))


class DepthTests(SynchronousTestCase):
    def test_too_deep_without_strings_checked(self):
        raw = json.dumps({"a": [[[{"b": "x"}]]]}).encode()
        self.assertEqual(bodies.parse_json(raw, limit=5), {"a": [[[{"b": "x"}]]]})
        e = self.assertRaises(errors.InvalidInput, bodies.parse_json, raw, 4)
        self.assertIn("nested deeper", e.message)
