"""The OpenAPI document against the routes Klein really has: it cannot drift."""

import json
import re

from twisted.trial.unittest import SynchronousTestCase

from inspectord.api import openapi
from inspectord.api.app import API
from tests.unit.helpers import Harness

_IGNORED = {"HEAD", "OPTIONS"}


def routed():
    """``{(method, path)}`` of every Klein route, paths in OpenAPI's ``{name}`` form."""
    result = set()
    for rule in API.app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        for method in rule.methods or ():
            if method not in _IGNORED:
                result.add((method.lower(), path))
    return result


def described(document):
    return {(method, path) for path, item in document["paths"].items() for method in item}


class OpenAPITests(SynchronousTestCase):
    def test_every_route_described_and_nothing_else(self):
        document = openapi.document()
        self.assertEqual(described(document), routed())
        self.assertGreaterEqual(len(routed()), 15)

    def test_path_parameters_match_the_path(self):
        for path, item in openapi.document()["paths"].items():
            names = set(re.findall(r"{([^}]+)}", path))
            for method, operation in item.items():
                declared = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
                self.assertEqual(declared, names, (method, path))

    def test_every_operation_documents_errors_in_the_json_format(self):
        for path, item in openapi.document()["paths"].items():
            for method, operation in item.items():
                codes = {int(c) for c in operation["responses"]}
                self.assertTrue({400, 405, 406}.issubset(codes), (method, path))
                public = operation.get("security") == []
                self.assertEqual(401 in codes, not public, (method, path))
                for code in codes:
                    if (path, code) == ("/healthcheck", 503):
                        continue  # ironic-inspector's plain-text "DISABLED BY FILE", kept for load balancers
                    if code >= 400:
                        schema = operation["responses"][str(code)]["content"]["application/json"]["schema"]
                        self.assertEqual(schema["required"], ["error"])

    def test_public_routes_are_the_unauthenticated_ones(self):
        public = {
            (method, path)
            for path, item in openapi.document()["paths"].items()
            for method, operation in item.items()
            if operation.get("security") == []
        }
        self.assertEqual(public, {("get", "/"), ("get", "/v1"), ("get", "/v1/openapi.json"), ("post", "/v1/continue"),
                                  ("get", "/healthcheck"), ("get", "/metrics")})

    def test_served(self):
        code, headers, body = Harness().request("GET", "/v1/openapi.json")
        self.assertEqual(code, 200)
        self.assertEqual(body, json.loads(json.dumps(openapi.document())))
        self.assertEqual(body["openapi"], "3.1.0")
