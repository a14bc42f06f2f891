"""inspectord.diagnosis as functions: a record and the filter's reports in, a status and a sentence out."""

import dataclasses

from twisted.trial.unittest import SynchronousTestCase

from inspectord import diagnosis
from inspectord.testing import FakePXEFilter

A = "52:54:00:00:00:aa"
B = "52:54:00:00:00:bb"
T = 1_800_000_000  # 2027-01-15T08:00:00 UTC


@dataclasses.dataclass(frozen=True)
class Record:
    ports: dict


def report(when, message="discover", allowed=True):
    return {"last_dhcp_request": when, "dhcp_message": message, "allowed_by_filter": allowed}


class ReportsTests(SynchronousTestCase):
    def test_nothing_records(self):
        self.assertIsNone(diagnosis.reports(None, [A]))
        self.assertIsNone(diagnosis.reports(FakePXEFilter(), [A]))

    def test_one_report_per_mac(self):
        pxe_filter = FakePXEFilter()
        pxe_filter.seen = {A: report(T)}
        self.assertEqual(diagnosis.reports(pxe_filter, [A, B]), {A: report(T), B: None})


class StatusTests(SynchronousTestCase):
    record = Record(ports={B: {}, A: {}})

    def test_nothing_recorded_no_status(self):
        self.assertIsNone(diagnosis.dhcp_status(self.record, None))
        self.assertIsNone(diagnosis.describe(None))

    def test_never_seen_names_the_macs(self):
        status = diagnosis.dhcp_status(self.record, {A: None, B: None})
        self.assertEqual(status, {"seen": False, "macs": [A, B]})
        self.assertEqual(diagnosis.describe(status),
                         "no DHCP request was seen from {}, {}: the node probably never PXE-booted".format(A, B))
        self.assertIn("its MACs (it has no port)", diagnosis.describe(diagnosis.dhcp_status(Record({}), {})))

    def test_latest_request_wins(self):
        status = diagnosis.dhcp_status(self.record, {A: report(T, allowed=True), B: report(T + 5, allowed=False)})
        self.assertEqual(status, {"seen": True, "mac": B, "last_dhcp_request": "2027-01-15T08:00:05",
                                  "dhcp_message": "discover", "allowed_by_filter": False})
        self.assertEqual(diagnosis.describe(status), "its last DHCP request (discover from {} at "
                         "2027-01-15T08:00:05) was blocked by the PXE filter".format(B))

    def test_answered_but_never_called_back(self):
        status = diagnosis.dhcp_status(self.record, {A: report(T, "request"), B: None})
        self.assertEqual((status["mac"], status["allowed_by_filter"]), (A, True))
        self.assertEqual(diagnosis.describe(status), "it was answered DHCP (request from {} at "
                         "2027-01-15T08:00:00) but the ramdisk never called back".format(A))
