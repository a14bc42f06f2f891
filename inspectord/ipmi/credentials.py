"""The rules new IPMI credentials must follow (IPMI 2.0 LAN, ipmitool on the ramdisk)."""

import re

MAX_USERNAME = 16
MAX_PASSWORD = 20
_PASSWORD = re.compile(r"[A-Za-z0-9]*")
_USERNAME = re.compile(r"[\x21-\x7e]*")


def validate_new_credentials(username, password):
    """Raise ``ValueError`` unless ``username``/``password`` can be set on a BMC.

    * user name: 1 to 16 printable ASCII characters, no spaces (IPMI stores
      16 bytes; the ramdisk passes it to ipmitool as one argument);
    * password: 1 to 20 characters among ``A-Z``, ``a-z``, ``0-9`` (IPMI 2.0
      allows 20 bytes; passwords above 16 need a BMC with 20-byte support).

    The messages never repeat the password.
    """
    if not isinstance(username, str) or not username:
        raise ValueError("The new IPMI user name must not be empty")
    if len(username) > MAX_USERNAME:
        raise ValueError("The new IPMI user name must be at most {} characters long".format(MAX_USERNAME))
    if not _USERNAME.fullmatch(username):
        raise ValueError("The new IPMI user name may only contain printable ASCII characters, without spaces")
    if not isinstance(password, str) or not password:
        raise ValueError("The new IPMI password must not be empty")
    if len(password) > MAX_PASSWORD:
        raise ValueError("The new IPMI password must be at most {} characters long".format(MAX_PASSWORD))
    if not _PASSWORD.fullmatch(password):
        raise ValueError("The new IPMI password may only contain the letters A-Z and a-z and the digits 0-9")
