"""inspectord.timeutil: stored (naive UTC) and shown (ISO 8601) times."""

import datetime

from twisted.trial.unittest import SynchronousTestCase

from inspectord import timeutil


class TimeTests(SynchronousTestCase):
    def test_utc_is_naive_utc(self):
        self.assertEqual(timeutil.utc(86400.5), datetime.datetime(1970, 1, 2, 0, 0, 0, 500000))

    def test_posix_inverts_utc(self):
        for seconds in (0.0, 1_700_000_000.25, 4_102_444_800.0):
            self.assertEqual(timeutil.posix(timeutil.utc(seconds)), seconds)

    def test_iso_has_its_offset(self):
        self.assertEqual(timeutil.iso(0), "1970-01-01T00:00:00+00:00")
