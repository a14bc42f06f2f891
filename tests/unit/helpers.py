"""Wiring for unit tests: inspectord in memory against a fake Ironic."""

import json
import os

from treq.testing import StubTreq
from twisted.internet import task

from inspectord import config as config_mod
from inspectord.api.app import API
from inspectord.api.auth import NoAuth
from inspectord.introspection import Introspection
from inspectord.service import check
from inspectord.ironic.client import IronicClient, static_endpoint
from inspectord.store import SQLStore, make_engine
from inspectord.store.sql import thd_upgrade
from inspectord.store.pool import SynchronousPool
from inspectord.store.swift import SwiftClient, SwiftDataStore
from inspectord.testing import FakeIronic, FakePXEFilter, FakeSwift

SWIFT_ACCOUNT_URL = "http://swift.test:8080/v1/AUTH_inspector"

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures")

def fixture(name):
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as f:
        return json.load(f)

_configs = {}
_template = []

def migrated_engine():
    """An in-memory database with every migration applied.

    The migrations run once per test process into a template; each engine
    gets a copy of it (SQLite's backup API), which is much faster.
    """
    if not _template:
        template = make_engine("sqlite://")
        thd_upgrade(template)
        _template.append(template.raw_connection().driver_connection)
    engine = make_engine("sqlite://")
    raw = engine.raw_connection()
    _template[0].backup(raw.driver_connection)
    raw.close()
    return engine

def make_config(**overrides):
    """A config for tests (frozen, so shared); ``overrides`` keyed ``group__option``."""
    key = tuple(sorted(overrides.items()))
    try:
        return _configs[key]
    except (KeyError, TypeError):
        pass
    config = _make_config(**overrides)
    try:
        _configs[key] = config
    except TypeError:  # unhashable override values
        pass
    return config

def _make_config(**overrides):
    values = {
        ("DEFAULT", "auth_strategy"): "noauth",
        ("DEFAULT", "listen_address"): "127.0.0.1",
        ("DEFAULT", "introspection_delay"): 0,
        ("ironic", "endpoint_override"): "http://ironic.test:6385",
    }
    for key, value in overrides.items():
        group, option = key.split("__")
        values[(group, option)] = value
    config = config_mod.load(overrides=values)
    check(config)  # what inspectord.service.make_service refuses
    return config

class Harness:
    """inspectord's parts wired in memory: a fake Ironic, SQLite in memory, a Clock."""

    def __init__(self, **overrides):
        self.clock = task.Clock()
        self.clock.advance(1_800_000_000)
        self.config = make_config(**overrides)
        self.fake = FakeIronic()
        self.ironic_http = StubTreq(self.fake.app.resource())
        self.ironic = IronicClient(
            self.ironic_http,
            static_endpoint("http://ironic.test:6385"),
            self.clock,
            max_retries=self.config.ironic.max_retries,
            retry_interval=self.config.ironic.retry_interval,
        )
        self.store = SQLStore(migrated_engine(), SynchronousPool())

        # With store_data=swift (and [swift]endpoint_override set): a fake Swift.
        self.fake_swift = self.swift_http = swift = None
        if self.config.processing.store_data == "swift":
            self.fake_swift = FakeSwift()
            self.swift_http = StubTreq(self.fake_swift.app.resource())
            swift = SwiftDataStore(
                SwiftClient(self.swift_http, static_endpoint(self.config.swift_auth.endpoint_override), self.clock)
            )

        self.filter = FakePXEFilter()
        self.introspection = Introspection(
            self.store, self.ironic, self.config, self.clock, pxe_filter=self.filter, swift=swift
        )
        self.api = API(self.introspection, self.store, self.ironic, self.config, NoAuth("127.0.0.1"))
        self.http = StubTreq(self.api.app.resource())

    def flush(self):
        for _ in range(50):
            self.ironic_http.flush()
            self.http.flush()
            if self.swift_http is not None:
                self.swift_http.flush()

    def request(self, method, path, body=None, headers=None, raw=None):
        """(code, headers, decoded JSON or text) of an API request."""
        kwargs = {"headers": headers or {}}
        if body is not None:
            kwargs["data"] = json.dumps(body).encode()
        if raw is not None:
            kwargs["data"] = raw
        d = self.http.request(method, "http://inspectord.test:5050" + path, **kwargs)
        self.flush()
        response = self._result(d)
        d = response.content()
        self.flush()
        content = self._result(d)
        try:
            parsed = json.loads(content) if content else None
        except ValueError:
            parsed = content.decode()
        return response.code, response.headers, parsed

    @staticmethod
    def _result(d):
        results = []
        d.addBoth(results.append)
        if not results:
            raise AssertionError("request did not complete")
        if hasattr(results[0], "raiseException"):
            results[0].raiseException()
        return results[0]
