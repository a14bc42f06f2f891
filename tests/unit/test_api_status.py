"""inspectord.api.status: domain errors carry no HTTP code; the API maps each to one."""

from twisted.trial.unittest import SynchronousTestCase

from inspectord import errors
from inspectord.api import auth, versions
from inspectord.api.status import BodyTooLarge, status_for
from inspectord.ipmi import base as ipmi
from inspectord.store.enrollment import DiscoveryLimited


class StatusTests(SynchronousTestCase):
    def test_each_error_its_status(self):
        bmc = dict(address="192.0.2.1", port=623, username="admin", reason="r", attempts=1, elapsed=1.0)
        cases = [
            (errors.InvalidInput("x"), 400),
            (errors.ProcessingError("x"), 400),
            (errors.AccessDenied("x"), 403),
            (errors.NotUnderIntrospection("x"), 403),
            (errors.NotFound("x"), 404),
            (errors.NodeBusy("x"), 409),
            (errors.InvalidTransition("waiting", "finish"), 409),
            (errors.StateChanged("x"), 409),
            (errors.Stopping("x"), 503),
            (errors.InternalError("x"), 500),
            (errors.IronicUnavailable("x"), 503),
            (errors.IronicError("x", status=None), 503),
            (errors.IronicError("x", status=400), 400),
            (errors.IronicError("x", status=503), 400),  # Ironic answered; kept as before
            (errors.IronicNotFound("x"), 404),
            (errors.SwiftError("x"), 503),
            (DiscoveryLimited("x"), 503),
            (ipmi.CredentialsRejected(**bmc), 400),
            (ipmi.BMCUnreachable(**bmc), 503),
            (ipmi.BMCSessionError(**bmc), 503),
            (auth.Unauthorized("x", "Basic"), 401),
            (auth.AuthUnavailable("x"), 503),
            (auth.TooManyLogins("x"), 429),
            (versions.UnsupportedVersion("x"), 406),
            (BodyTooLarge("x"), 413),
            (errors.InspectordError("x"), 400),
        ]
        self.assertEqual([(type(e).__name__, status_for(e)) for e, _ in cases],
                         [(type(e).__name__, code) for e, code in cases])

    def test_domain_errors_have_no_http_code(self):
        domain = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, Exception)]
        self.assertGreater(len(domain), 10)
        for cls in domain:
            self.assertFalse(hasattr(cls, "code"), cls.__name__)
