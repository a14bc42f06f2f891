"""Secrets an introspection carries (new IPMI credentials), sealed with a key held in memory only.

What the database stores of a secret is a Fernet token (AES-128-CBC and
HMAC-SHA256, from ``cryptography``) under a key this process generated at
start and never writes anywhere.  The database, its WAL and its backups
hold only ciphertext; the key dies with the process.  The consequence,
stated in README.rst: an introspection that sets IPMI credentials must be
finished by the process that started it; after a restart (or on another
instance sharing the database) its credentials cannot be read and the
introspection ends in ``error`` saying so, and the operator starts it again.
"""

import json

from cryptography.fernet import Fernet, InvalidToken

from inspectord import errors

_FIELD = "sealed"


class SecretLost(errors.ProcessingError):
    """The key that sealed a secret is gone (the process restarted)."""


class Sealer:
    """Seals JSON values with a key that lives in this object only."""

    def __init__(self):
        self._fernet = Fernet(Fernet.generate_key())

    def seal(self, value):
        return {_FIELD: self._fernet.encrypt(json.dumps(value).encode()).decode("ascii")}

    def unseal(self, sealed):
        """The value :meth:`seal` was given; :class:`SecretLost` when another process sealed it."""
        if not isinstance(sealed, dict) or _FIELD not in sealed:
            raise SecretLost("The secret is not sealed")
        try:
            return json.loads(self._fernet.decrypt(sealed[_FIELD].encode("ascii")))
        except (InvalidToken, ValueError, TypeError):
            raise SecretLost(
                "The new IPMI credentials were held in memory by an inspectord process that has since "
                "restarted (or by another instance); start introspection again to set them"
            ) from None
