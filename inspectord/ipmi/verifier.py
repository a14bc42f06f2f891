"""Verify new BMC credentials: log in over IPMI 2.0 LAN, retried on the clock within a window."""

from twisted.internet import defer, task
from twisted.logger import Logger
from zope.interface import implementer

from inspectord import interfaces
from inspectord.ipmi.base import ADMINISTRATOR, BMC_ERROR, ERRORS, UNREACHABLE, AttemptResult, format_address
from inspectord.ipmi.session import thd_open_session


@implementer(interfaces.ICredentialsVerifier)
class CredentialsVerifier:
    """Checks that a BMC accepts a user name and password.

    The ramdisk sets the credentials *after* its callback, so the first
    attempts are expected to be rejected (or to find the BMC busy): every
    failure is retried, with exponential backoff from ``retry_interval`` up
    to ``max_interval``, until ``window`` seconds have passed; the last
    attempt starts at the end of the window at the latest.  Then the last
    outcome decides the error: :class:`CredentialsRejected`,
    :class:`BMCUnreachable` or :class:`BMCSessionError`.

    Each attempt runs ``open_session(address, port, username, password,
    privilege, timeout)`` (blocking; :func:`thd_open_session` by default)
    in ``pool``, never in the reactor thread.  The thread gives up
    after ``attempt_timeout`` seconds, and so does the verifier, on its
    clock, should the thread hang.  Attempts on one BMC never overlap, also
    across calls and after such a timeout: pyghmi shares sessions by
    credentials and is not safe with two logins to one BMC at once.  Use
    one verifier per process.

    :param clock: ``IReactorTime`` for the window, backoff and timeouts.
    :param pool: runs the blocking login, ``run(f, *args) -> Deferred``: the
        :class:`inspectord.threads.ThreadPoolService` reserved for pyghmi
        (whose stop waits for a stuck login only a bounded grace), or
        :class:`inspectord.threads.SynchronousRunner` in unit tests.
    :param privilege: session privilege level to ask for (4 = ADMINISTRATOR,
        what Ironic's ipmitool driver uses by default).
    """

    log = Logger()

    def __init__(
        self,
        clock,
        pool,
        window=60.0,
        attempt_timeout=10.0,
        retry_interval=2.0,
        max_interval=15.0,
        privilege=ADMINISTRATOR,
        open_session=thd_open_session,
    ):
        if window < 0 or attempt_timeout <= 0 or retry_interval <= 0:
            raise ValueError("window must be >= 0, attempt_timeout and retry_interval > 0")
        self._clock = clock
        self._pool = pool
        self.window = window
        self.attempt_timeout = attempt_timeout
        self.retry_interval = retry_interval
        self.max_interval = max(max_interval, retry_interval)
        self.privilege = privilege
        self._open_session = open_session
        # (address, port) -> Deferred of the thread still working on that BMC
        self._in_flight = {}
        # What verifications wait for (an attempt, the next one): cancelled by stop().
        self._waits = set()
        self._stopping = False

    def stop(self):
        """inspectord is stopping: every verification in progress ends with ``CancelledError`` now.

        A login attempt already in a pool thread goes on there (pyghmi
        cannot be interrupted); nobody waits for it, and the pool's stop
        waits for its thread only a bounded grace.
        """
        self._stopping = True
        for wait in list(self._waits):
            wait.cancel()

    async def _wait(self, d):
        if self._stopping:
            d.cancel()
        self._waits.add(d)
        try:
            return await d
        finally:
            self._waits.discard(d)

    async def verify(self, address, username, password, port=623):
        """Return once the BMC at ``address:port`` accepts ``username``/``password``.

        Raises a :class:`BMCVerificationError` subclass when the window ends
        without a successful login.  The password is never logged.
        """
        start = self._clock.seconds()
        deadline = start + self.window
        where = format_address(address, port)
        delay = self.retry_interval
        attempts = 0
        while True:
            attempts += 1
            result = await self._attempt(address, port, username, password)
            now = self._clock.seconds()
            if result.ok:
                self.log.info(
                    "BMC {bmc} accepted user {user} (attempt {attempt}, {elapsed:.1f} s)",
                    bmc=where, user=username, attempt=attempts, elapsed=now - start,
                )
                return
            remaining = deadline - now
            if remaining <= 0:
                self.log.warn(
                    "BMC {bmc}: giving up on user {user} after {attempt} attempts: {outcome}: {reason}",
                    bmc=where, user=username, attempt=attempts, outcome=result.outcome, reason=result.reason,
                )
                raise ERRORS[result.outcome](
                    address, port, username=username, reason=result.reason, attempts=attempts, elapsed=now - start
                )
            wait = min(delay, remaining)
            self.log.info(
                "BMC {bmc}: user {user} not accepted yet (attempt {attempt}): {outcome}: {reason}; "
                "retrying in {delay:.1f} s",
                bmc=where, user=username, attempt=attempts, outcome=result.outcome, reason=result.reason, delay=wait,
            )
            await self._wait(task.deferLater(self._clock, wait))
            delay = min(delay * 2, self.max_interval)

    async def _attempt(self, address, port, username, password):
        if self._stopping:
            raise defer.CancelledError("inspectord is stopping")
        key = (address, port)
        while key in self._in_flight:
            # An attempt on this BMC (maybe an abandoned one) is still running.
            await self._wait(_follow(self._in_flight[key]))
        running = self._pool.run(
            _thd_attempt, self._open_session, address, port, username, password, self.privilege,
            self.attempt_timeout,
        )
        self._in_flight[key] = running

        def done(result):
            if self._in_flight.get(key) is running:
                del self._in_flight[key]
            return result

        running.addCallback(done)
        attempt = _follow(running)
        attempt.addTimeout(self.attempt_timeout, self._clock)
        try:
            return await self._wait(attempt)
        except defer.TimeoutError:
            return AttemptResult(UNREACHABLE, "no answer within {:g} s".format(self.attempt_timeout))


def _thd_attempt(open_session, *args):
    # In the pool thread: whatever happens, hand back a plain record.
    try:
        return open_session(*args)
    except Exception as e:
        return AttemptResult(BMC_ERROR, "login attempt failed: {}".format(type(e).__name__))


def _follow(d):
    """A new Deferred with ``d``'s result (``d`` never fails); cancelling it leaves ``d`` alone."""
    follower = defer.Deferred()

    def relay(result):
        if not follower.called:
            follower.callback(result)
        return result

    d.addCallback(relay)
    return follower
