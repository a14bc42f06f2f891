"""API authentication strategies."""

from twisted.logger import Logger


class NoAuth:
    """``auth_strategy=noauth``: every request is allowed."""

    log = Logger()

    def __init__(self, listen_address):
        if listen_address not in ("127.0.0.1", "::1", "localhost"):
            self.log.warn(
                "auth_strategy=noauth and listening on {address}: anyone who can "
                "reach this address can start introspection and read its data",
                address=listen_address,
            )

    async def check(self, request, rule):
        return None


def make_auth(config):
    return NoAuth(config.default.listen_address)
