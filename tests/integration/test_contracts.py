"""The Ironic contract (``tests/contracts.py``) against the real Ironic: the fake cannot drift from it."""

import itertools

from treq.client import HTTPClient
from twisted.internet import defer, reactor
from twisted.trial import unittest
from twisted.web.client import Agent, HTTPConnectionPool

from inspectord.ironic.client import IronicClient, static_endpoint
from tests.contracts import IronicContract
from tests.integration.base import SKIP, ironic, new_macs

_names = itertools.count()


class RealIronicEnv:
    def __init__(self, test):
        self.server = ironic()
        self.ironic_client = self.server.client()
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.client = IronicClient(
            HTTPClient(Agent(reactor, pool=pool)), static_endpoint(self.server.url), reactor, max_retries=2,
            retry_interval=0.2,
        )
        self._nodes = []
        test.addCleanup(self.cleanup)

    def unique(self, prefix):
        return "{}-{}-{}".format(prefix, id(self) % 10000, next(_names))

    def unique_bmc(self):
        return "192.0.2.{}".format(100 + next(_names) % 150)

    def new_macs(self, count):
        return new_macs(count)

    def add_node(self, name, macs, driver_info=None):
        uuid = self.server.enroll_node(name, macs, driver_info=driver_info).uuid
        self._nodes.append(uuid)
        return uuid

    def created(self, uuid):
        self._nodes.append(uuid)

    def cleanup(self):
        for uuid in self._nodes:
            try:
                self.ironic_client.node.delete(uuid)
            except Exception:
                pass


class RealIronicContractTests(IronicContract, unittest.TestCase):
    skip = SKIP
    timeout = 120

    def setUp(self):
        self.env = RealIronicEnv(self)

    def run_scenario(self, scenario):
        return defer.Deferred.fromCoroutine(scenario(self.env.client, self.env))
