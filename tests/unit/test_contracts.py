"""The contract tests of :mod:`inspectord.interfaces`, in memory.

The Ironic contract runs here against the fake Ironic (the real Ironic runs
it in ``tests/integration/test_contracts.py``); the PXE filter and verifier
contracts run against the real classes and the fakes.
"""

import datetime
import itertools

from treq.testing import StubTreq
from twisted.internet import defer, task
from twisted.trial.unittest import SynchronousTestCase

from inspectord.dhcp.sniffer import DHCPSeen
from inspectord.ipmi import CredentialsVerifier
from inspectord.ipmi.base import OK, REJECTED, UNREACHABLE, AttemptResult
from inspectord.ironic.client import IronicClient, static_endpoint
from inspectord.pxe.service import PXEFilterService
from inspectord.store import SQLStore
from inspectord.store.pool import SynchronousPool
from inspectord.testing import FakeIronic, FakePXEFilter, FakeVerifier
from inspectord.threads import SynchronousRunner
from tests.contracts import IronicContract, PXEFilterContract, VerifierContract
from tests.unit.helpers import migrated_engine
from tests.unit.test_pxe_service import FakeDriver, FakePorts

_names = itertools.count()


class FakeIronicEnv:
    def __init__(self):
        self.fake = FakeIronic()
        self.http = StubTreq(self.fake.app.resource())
        self.clock = task.Clock()
        self.client = IronicClient(self.http, static_endpoint("http://ironic.test:6385"), self.clock, max_retries=0)
        self._macs = itertools.count(1)

    def unique(self, prefix):
        return "{}-{}".format(prefix, next(_names))

    def unique_bmc(self):
        return "192.0.2.{}".format(next(_names) % 250 + 1)

    def new_macs(self, count):
        return ["52:54:00:c1:{:02x}:{:02x}".format(*divmod(next(self._macs), 256)) for _ in range(count)]

    def add_node(self, name, macs, driver_info=None):
        return self.fake.add_node(name=name, macs=macs, driver_info=driver_info)

    def created(self, uuid):
        pass


def _run_flushed(test, coroutine, flush):
    d = defer.Deferred.fromCoroutine(coroutine)
    for _ in range(200):
        if d.called:
            break
        flush()
    test.successResultOf(d)


class FakeIronicContractTests(IronicContract, SynchronousTestCase):
    def setUp(self):
        self.env = FakeIronicEnv()

    def run_scenario(self, scenario):
        _run_flushed(self, scenario(self.env.client, self.env), self.env.http.flush)


class _FilterEnv:
    now = datetime.datetime(2027, 1, 1)


class _PXEFilterCase(PXEFilterContract):
    def setUp(self):
        self.store = SQLStore(migrated_engine(), SynchronousPool())
        self.clock = task.Clock()

    def run_scenario(self, scenario, recording=False):
        pxe_filter = self.make_filter(self.store, recording)
        _run_flushed(self, scenario(pxe_filter, _FilterEnv()), lambda: self.clock.advance(0.1))


class FakePXEFilterContractTests(_PXEFilterCase, SynchronousTestCase):
    def make_filter(self, store, recording=False):
        pxe_filter = FakePXEFilter(store)
        if recording:
            pxe_filter.seen = {}
        return pxe_filter

    def record_dhcp(self, pxe_filter, mac, kind, allowed, when):
        pxe_filter.seen[mac] = {"last_dhcp_request": when, "dhcp_message": kind, "allowed_by_filter": allowed}


class PXEFilterServiceContractTests(_PXEFilterCase, SynchronousTestCase):
    def make_filter(self, store, recording=False):
        seen = DHCPSeen() if recording else None
        service = PXEFilterService(FakeDriver(), store, FakePorts(), self.clock, sync_period=0, seen=seen)
        service.startService()
        self.addCleanup(service.stopService)
        return service

    def record_dhcp(self, pxe_filter, mac, kind, allowed, when):
        pxe_filter.seen.record(mac, kind, allowed, when)


class FakeVerifierContractTests(VerifierContract, SynchronousTestCase):
    def make_verifier(self, bmcs):
        return FakeVerifier(bmcs)

    def run_scenario(self, scenario, bmcs):
        verifier = self.make_verifier(bmcs)
        _run_flushed(self, scenario(verifier, None), lambda: None)


class CredentialsVerifierContractTests(VerifierContract, SynchronousTestCase):
    """The real verifier, its IPMI login replaced by a table of BMCs (pyghmi is tested elsewhere)."""

    def make_verifier(self, bmcs):
        self.clock = task.Clock()

        def open_session(address, port, username, password, privilege, timeout):
            accepted = bmcs.get((address, port))
            if accepted is None:
                return AttemptResult(UNREACHABLE, "no answer")
            return AttemptResult(OK if accepted == (username, password) else REJECTED, "checked")

        return CredentialsVerifier(self.clock, SynchronousRunner(), window=0, open_session=open_session)

    def run_scenario(self, scenario, bmcs):
        verifier = self.make_verifier(bmcs)
        _run_flushed(self, scenario(verifier, None), lambda: self.clock.advance(1))


class NoopFilterTests(SynchronousTestCase):
    """[pxe_filter]driver=noop provides the interface and filters nothing."""

    def test_provides_and_allows_everything(self):
        from zope.interface.verify import verifyObject

        from inspectord import interfaces
        from inspectord.pxe import NoopFilter

        noop = NoopFilter()
        self.assertTrue(verifyObject(interfaces.IPXEFilter, noop))
        self.assertTrue(self.successResultOf(noop.sync()))
        self.assertTrue(noop.allows("52:54:00:c0:00:01"))
        self.assertIsNone(noop.dhcp_seen("52:54:00:c0:00:01"))
        self.assertIsNone(noop.seen)
