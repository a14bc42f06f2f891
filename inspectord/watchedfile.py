"""A small file (policy, htpasswd) parsed again when it changes."""

import os

from twisted.logger import Logger

from inspectord.singleflight import SingleFlight


class WatchedFile:
    """A small file parsed again when it changes, checked at most every ``interval`` seconds.

    :param parse: ``parse(text) -> value``; raises ValueError for bad
        content.  Runs in the thread pool, like the ``stat`` and the read.
    :param pool: has ``run(f, *args) -> Deferred``, e.g. a
        :class:`inspectord.threads.ThreadPoolService`.
    :param missing: value while the file does not exist; None makes a
        missing file an error like bad content.
    :param on_load: called with each new value, in the caller's (reactor) thread.
    The first load (:meth:`load_now`) is synchronous, for start-up.  After
    that, a change whose content does not parse keeps the previous value and
    is logged.  Concurrent callers share one check of the file.
    """

    log = Logger()

    def __init__(self, path, parse, pool, clock, interval=1.0, missing=None, what="file", on_load=None):
        self.path = path
        self._on_load = on_load or (lambda value: None)
        self._parse = parse
        self._pool = pool
        self._clock = clock
        self._interval = interval
        self._missing = missing
        self._what = what
        self._signature = None
        self._value = None
        self._checked_at = None
        self._checks = SingleFlight()

    def _thd_read(self, known_signature):
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self._missing is None:
                raise ValueError("{} does not exist".format(self.path)) from None
            return "missing", self._missing
        signature = (st.st_ino, st.st_size, st.st_mtime_ns)
        if signature == known_signature:
            return signature, None
        with open(self.path, encoding="utf-8") as f:
            return signature, self._parse(f.read())

    def load_now(self):
        """Read and parse now, in this thread; raise ValueError or OSError."""
        self._signature, self._value = self._thd_read(None)
        self._checked_at = self._clock.seconds()
        self._on_load(self._value)
        return self._value

    async def get(self):
        """The current value, re-read first if the file changed."""
        if self._checked_at is not None and self._clock.seconds() - self._checked_at < self._interval:
            return self._value
        await self._checks.call(None, self._refresh)
        return self._value

    async def _refresh(self):
        try:
            signature, value = await self._pool.run(self._thd_read, self._signature)
        except (OSError, ValueError) as e:
            self.log.error("Keeping the previous {what}: cannot use {path}: {error}", what=self._what,
                           path=self.path, error=str(e))
        else:
            if signature != self._signature:
                self.log.info("Loaded {what} {path}", what=self._what, path=self.path)
                self._signature, self._value = signature, value
                self._on_load(value)
        self._checked_at = self._clock.seconds()
