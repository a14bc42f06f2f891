"""A simulated BMC: a real IPMI 2.0 LAN (RMCP+) endpoint on 127.0.0.1 with user management.

Built on ``pyghmi.ipmi.bmc.Bmc`` (the server half of pyghmi), extended so
that ``ipmitool -I lanplus`` can play the ramdisk's part when inspectord
sets IPMI credentials, and so that Ironic's ``ipmitool`` power interface
can drive it::

    python -m devenv.bmc --port 6230 --user admin --password password

prints ``ready 127.0.0.1 PORT`` once it listens (``--port 0`` picks a free
port), then serves until killed.  ``--state-file`` keeps the users, the
power state and the boot device in a JSON file (mode 0600, passwords in
clear: this is a test tool), rewritten on every change.

What it adds to the stock ``Bmc`` (pyghmi 1.6):

* Cipher suites 3 (RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128) and 17
  (RAKP-HMAC-SHA256, HMAC-SHA256-128, AES-CBC-128), chosen from the client's
  RMCP+ Open Session Request.  The stock server answers SHA-1 whatever the
  client proposes, and pyghmi's client proposes SHA-256 first.
  Other proposals get status 0x11 (no cipher suite match).
* RAKP error answers, so clients fail in milliseconds instead of retrying
  for over a minute: RAKP2 status 0x0D (unauthorized name) for an unknown,
  disabled or channel-less user, 0x09 (invalid role) for a role above the
  user's privilege limit, RAKP4 status 0x0F for a RAKP3 with a wrong code.
* A user table (10 slots, slot 1 the null user) and the App commands that
  manage it: Get Channel Info (0x42), Get Channel Access (0x41), Get
  Channel Cipher Suites (0x54, in and out of a session), Set/Get User
  Access (0x43/0x44), Set/Get User Name (0x45/0x46), Set User Password
  (0x47: disable, enable, set, test).  A user logs in only when
  enabled, with a password, IPMI messaging on and a privilege limit on
  channel 1 (like a real BMC, a fresh slot has none of these).
* Session privilege: Set Session Privilege Level is checked against the
  user's limit; user management needs ADMINISTRATOR, chassis control
  OPERATOR (completion code 0xD4 otherwise).
* A power state (Get Chassis Status, Chassis Control), a boot device, and
  Get System GUID.
* A fresh server session for every Open Session Request, also when a
  client reuses its UDP port (pyghmi's client does): the stock server
  reuses the old session's keys and algorithms and garbles its answer.

The command sequence that sets credentials, as the ramdisk runs it, is
:func:`set_credentials_argv`.

:class:`BMCProcess` runs one simulator as a subprocess for tests.  This
module uses the standard library and pyghmi only; the simulator runs in its
own process because pyghmi's session machinery is process-global.
"""

import argparse
import hashlib
import hmac
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback

MAX_USERS = 10
LAN_CHANNEL = 1
NO_ACCESS = 0x0F

# IPMI privilege levels
CALLBACK, USER, OPERATOR, ADMINISTRATOR, OEM = 1, 2, 3, 4, 5
PRIVILEGE_NAMES = {CALLBACK: "CALLBACK", USER: "USER", OPERATOR: "OPERATOR", ADMINISTRATOR: "ADMINISTRATOR", OEM: "OEM"}

# RMCP+ and RAKP status codes (IPMI 2.0, table 13-15)
RMCP_NO_CIPHER_SUITE_MATCH = 0x11
RAKP_INVALID_SESSION_ID = 0x02
RAKP_INVALID_ROLE = 0x09
RAKP_UNAUTHORIZED_NAME = 0x0D
RAKP_INVALID_INTEGRITY_CHECK = 0x0F

# IPMI completion codes
CC_OK = 0x00
CC_INVALID_COMMAND = 0xC1
CC_INVALID_DATA = 0xCC
CC_INSUFFICIENT_PRIVILEGE = 0xD4

# (authentication, integrity, confidentiality) algorithm numbers -> suite
CIPHER_SUITES = {
    (1, 1, 1): 3,  # RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128
    (3, 4, 1): 17,  # RAKP-HMAC-SHA256, HMAC-SHA256-128, AES-CBC-128
}
_SUITE_HASH = {3: (hashlib.sha1, 12), 17: (hashlib.sha256, 16)}
# Get Channel Cipher Suites records: start-of-record, suite id, algorithms (tagged)
_SUITE_RECORDS = bytes([0xC0, 3, 0x01, 0x41, 0x81, 0xC0, 17, 0x03, 0x44, 0x81])

POWER_STATES = ("off", "on")


# -- the ramdisk's part, as argv -------------------------------------------------


def set_credentials_argv(host, port, admin_user, admin_password, user_id, username, password, channel=LAN_CHANNEL):
    """The ``ipmitool -I lanplus`` commands that give slot ``user_id`` new credentials.

    The same four commands as ironic-python-agent's ``setup_ipmi_credentials``
    (which runs them in-band, without ``-I lanplus``, on slot 2), with the slot
    and channel as parameters.  Each item is one argv; the admin password is
    passed with ``-E`` (the ``IPMI_PASSWORD`` environment variable, see
    :func:`ipmitool_env`) so it does not show in the process list.
    """
    base = lanplus_argv(host, port, admin_user)
    uid, chan = str(user_id), str(channel)
    return [
        base + ["user", "set", "name", uid, username],
        base + ["user", "set", "password", uid, password],
        base + ["user", "enable", uid],
        base + ["channel", "setaccess", chan, uid, "link=on", "ipmi=on", "callin=on", "privilege=4"],
    ]


def lanplus_argv(host, port, user, cipher_suite=None):
    """``ipmitool -I lanplus`` against ``host:port`` as ``user``; the password comes from ``IPMI_PASSWORD``."""
    argv = ["ipmitool", "-I", "lanplus", "-H", host, "-p", str(port), "-U", user, "-E"]
    if cipher_suite is not None:
        argv += ["-C", str(cipher_suite)]
    return argv


def ipmitool_env(password, base=None):
    env = dict(os.environ if base is None else base)
    env["IPMI_PASSWORD"] = password
    return env


# -- the user table ----------------------------------------------------------------


def _new_user():
    return {
        "name": "",
        "password": None,
        "enabled": False,
        # channel 1 access: privilege limit (0xF = no access) and the three flags
        "privilege": NO_ACCESS,
        "ipmi": False,
        "link": False,
        "callback_only": False,
    }


class UserTable:
    """IPMI user slots 1..MAX_USERS; slot 1 is the null user (empty fixed name)."""

    def __init__(self, users=None):
        self.users = {uid: _new_user() for uid in range(1, MAX_USERS + 1)}
        for uid, user in (users or {}).items():
            self.users[int(uid)].update(user)

    def valid_id(self, uid):
        return 1 <= uid <= MAX_USERS

    def login_user(self, name):
        """The user ``name`` may log in as over LAN, or None."""
        for user in self.users.values():
            if (
                user["name"] == name
                and user["enabled"]
                and user["password"] is not None
                and user["ipmi"]
                and user["privilege"] != NO_ACCESS
            ):
                return user
        return None

    def enabled_count(self):
        return sum(1 for u in self.users.values() if u["enabled"])

    def as_dict(self):
        return {str(uid): dict(user) for uid, user in self.users.items()}


# -- the pyghmi server, extended ---------------------------------------------------


def _server_classes():
    """Define the pyghmi subclasses (pyghmi is imported only where the simulator runs)."""
    import pyghmi.ipmi.bmc as bmc
    import pyghmi.ipmi.private.constants as constants
    import pyghmi.ipmi.private.serversession as serversession
    import pyghmi.ipmi.private.session as ipmisession

    class SimulatedSession(serversession.ServerSession):
        """One RMCP+ session, negotiated per the client's proposal."""

        def create_open_session_response(self, request):
            clienttag = request[0]
            self.clientsessionid = request[4:8]
            self.managedsessionid = os.urandom(4)
            algorithms = (request[12], request[20], request[28])
            suite = CIPHER_SUITES.get(algorithms)
            if suite is None:
                self.suite = None
                return bytearray([clienttag, RMCP_NO_CIPHER_SUITE_MATCH, 0, 0]) + self.clientsessionid
            self.suite = suite
            self.currhashlib, self.currhashlen = _SUITE_HASH[suite]
            self.privlevel = ADMINISTRATOR
            auth, integrity, confidentiality = algorithms
            return (
                bytearray([clienttag, 0, self.privlevel, 0])
                + self.clientsessionid
                + self.managedsessionid
                + bytearray([0, 0, 0, 8, auth, 0, 0, 0])
                + bytearray([1, 0, 0, 8, integrity, 0, 0, 0])
                + bytearray([2, 0, 0, 8, confidentiality, 0, 0, 0])
            )

        def _got_rmcp_openrequest(self, data):
            # A client reusing its UDP port: start from a clean session (the
            # stock server would answer with the old session's keys).
            type(self)(
                self.authdata, self.bmc.kg, self.sockaddr, self.bmc.serversocket, bytes(data), self.uuid, bmc=self.bmc
            )

        def _rakp_error(self, payload_type, tag, status):
            message = bytearray([tag, status, 0, 0]) + self.clientsessionid
            self.send_payload(message, constants.payload_types[payload_type], retry=False)

        def _got_rakp1(self, data):
            clienttag = data[0]
            if getattr(self, "suite", None) is None:
                return self._rakp_error("rakp2", clienttag, RMCP_NO_CIPHER_SUITE_MATCH)
            if bytes(data[4:8]) != bytes(self.managedsessionid):
                return self._rakp_error("rakp2", clienttag, RAKP_INVALID_SESSION_ID)
            self.Rm = data[8:24]
            self.rolem = data[24]
            requested = self.rolem & 0x0F
            namelen = data[27]
            self.username = bytes(data[28 : 28 + namelen])
            user = self.bmc.users.login_user(self.username.decode("utf-8", "replace"))
            if user is None:
                self.bmc.note("login refused: unknown or disabled user {!r}".format(self.username))
                return self._rakp_error("rakp2", clienttag, RAKP_UNAUTHORIZED_NAME)
            if requested > user["privilege"]:
                self.bmc.note("login refused: role {} above the limit of {!r}".format(requested, self.username))
                return self._rakp_error("rakp2", clienttag, RAKP_INVALID_ROLE)
            # The session may go up to the requested role (0 = the user's limit).
            self.maxpriv = requested or user["privilege"]
            self.clientpriv = min(USER, self.maxpriv)
            self.uuiddata = self.uuid.bytes
            self.Rc = os.urandom(16)
            self.kuid = user["password"].encode("utf-8")
            self.kg = self.bmc.kg if self.bmc.kg is not None else self.kuid
            hmacdata = (
                self.clientsessionid
                + self.managedsessionid
                + self.Rm
                + self.Rc
                + self.uuiddata
                + bytearray([self.rolem, len(self.username)])
                + self.username
            )
            authcode = hmac.new(self.kuid, bytes(hmacdata), self.currhashlib).digest()
            message = bytearray([clienttag, 0, 0, 0]) + self.clientsessionid + self.Rc + self.uuiddata + authcode
            self.send_payload(message, constants.payload_types["rakp2"], retry=False)

        def _got_rakp3(self, data):
            if not hasattr(self, "kuid"):
                return
            clienttag = data[0]
            if data[1] != 0:
                return  # the client rejected our RAKP2 (wrong password on its side)
            hashlib_ = self.currhashlib
            rolename = struct.pack("2B", self.rolem, len(self.username)) + self.username
            expected = hmac.new(self.kuid, bytes(self.Rc + self.clientsessionid) + rolename, hashlib_).digest()
            if not hmac.compare_digest(expected, bytes(data[8:])):
                self.bmc.note("login refused: bad RAKP3 code for {!r}".format(self.username))
                return self._rakp_error("rakp4", clienttag, RAKP_INVALID_INTEGRITY_CHECK)
            self.sik = hmac.new(self.kg, bytes(self.Rm + self.Rc) + rolename, hashlib_).digest()
            self.k1 = hmac.new(self.sik, b"\x01" * 20, hashlib_).digest()
            self.k2 = hmac.new(self.sik, b"\x02" * 20, hashlib_).digest()
            self.aeskey = self.k2[0:16]
            self.localsid = struct.unpack("<I", self.managedsessionid)[0]
            self.ipmicallback = self.handle_client_request
            self._send_rakp4(clienttag, 0)
            self.bmc.note("session opened for {!r} (cipher suite {})".format(self.username, self.suite))

        def _send_rakp4(self, tagvalue, statuscode):
            payload = bytearray([tagvalue, statuscode, 0, 0]) + self.clientsessionid
            hmacdata = bytes(self.Rm + self.managedsessionid + self.uuiddata)
            payload += hmac.new(self.sik, hmacdata, self.currhashlib).digest()[: self.currhashlen]
            self.send_payload(payload, constants.payload_types["rakp4"], retry=False)
            self.confalgo = "aes"
            self.integrityalgo = self.currhashlib.__name__
            self.sequencenumber = 1
            self.sessionid = struct.unpack("<I", bytes(self.clientsessionid))[0]

        def _handle_ipmi2_packet(self, data):
            ptype = data[5] & 0b00111111
            sessionid = struct.unpack("<I", bytes(data[6:10]))[0]
            if ptype == 0 and sessionid == 0:
                # Sessionless (Get Channel Cipher Suites) from a reused port.
                return self.bmc.sessionless_data(data, self.sockaddr)
            return super()._handle_ipmi2_packet(data)

        def sessionless_data(self, data, sockaddr):
            # pyghmi routes here packets queued for this session whose client
            # address was unregistered meanwhile (closed session, new login).
            return self.bmc.sessionless_data(data, sockaddr)

        def handle_client_request(self, request):
            netfn, command = request["netfn"], request["command"]
            if netfn == 6 and command == 0x3B:  # Set Session Privilege Level
                wanted = request["data"][0] & 0x0F if request["data"] else 0
                if wanted == 0:
                    return self._send_ipmi_net_payload(data=[self.clientpriv])
                if wanted > self.maxpriv:
                    return self._send_ipmi_net_payload(code=0x81)
                self.clientpriv = wanted
                return self._send_ipmi_net_payload(data=[self.clientpriv])
            if netfn == 6 and command == 0x3C:  # Close Session
                self.send_ipmi_response()
                self.close_server_session()
                return None
            return self.bmc.handle_raw_request(request, self)

        def close_server_session(self):
            handlers = ipmisession.Session.bmc_handlers.get(self.sockaddr, {})
            if handlers.get(self.bmc.port) is self:
                del handlers[self.bmc.port]
                if not handlers:
                    ipmisession.Session.bmc_handlers.pop(self.sockaddr, None)

    class SimulatedBMC(bmc.Bmc):
        """A BMC with users, a power state and a boot device; see the module docstring."""

        def __init__(self, users, address="127.0.0.1", port=623, state_file=None, verbose=False):
            self.users = users
            self.power_state = "off"
            self.boot_device = "default"
            self.state_file = state_file
            self.verbose = verbose
            if state_file and os.path.exists(state_file):
                self._load(state_file)
            family = socket.getaddrinfo(address, port, 0, socket.SOCK_DGRAM)[0][0]
            if family == socket.AF_INET and ipmisession.myself is None:
                # pyghmi wakes its I/O thread with a datagram to its own first
                # socket at 'myself'; left unset it picks an IPv6 address an
                # IPv4 socket cannot send to.
                ipmisession.myself = "127.0.0.1"
            super().__init__(authdata=None, port=port, address=address)
            self.port = self.serversocket.getsockname()[1]
            self.address = address
            self.save()

        # -- state ------------------------------------------------------------

        def _load(self, path):
            with open(path, encoding="utf-8") as f:
                state = json.load(f)
            self.power_state = state.get("power", self.power_state)
            self.boot_device = state.get("boot_device", self.boot_device)
            self.users = UserTable(state.get("users"))

        def save(self):
            if not self.state_file:
                return
            state = {"power": self.power_state, "boot_device": self.boot_device, "users": self.users.as_dict()}
            directory = os.path.dirname(os.path.abspath(self.state_file))
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".bmc-state-")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(state, f, indent=1, sort_keys=True)
            os.replace(tmp, self.state_file)

        def note(self, message):
            if self.verbose:
                print(message, flush=True)

        # -- sessionless ------------------------------------------------------

        def sessionless_data(self, data, sockaddr):
            if len(data) < 22:
                return
            data = bytearray(data)
            if not (data[0] == 6 and data[2:4] == b"\xff\x07"):
                return
            if data[4] == 6:
                payloadtype = data[5] & 0b00111111
                if payloadtype == 0x10:  # RMCP+ Open Session Request
                    SimulatedSession(
                        self.authdata, self.kg, sockaddr, self.serversocket, data[16:], self.uuid, bmc=self
                    )
                    return
                if payloadtype != 0:
                    return
                data = data[2:]  # the IPMI 2.0 header is two bytes longer
            myaddr, netfnlun = data[14], data[15]
            if netfnlun >> 2 != 6:
                return
            clientaddr, clientlun = data[17], data[18]
            clientseq, clientlun = clientlun >> 2, clientlun & 0b11
            mylun = netfnlun & 0b11
            if data[19] == 0x38 and len(data) >= 22:  # Get Channel Authentication Capabilities
                # IPMI 1.5 clients get the same answer (IPMI 2.0 only) and give up at once.
                if data[20] & 0x0F in (0x0E, LAN_CHANNEL):
                    self.send_auth_cap(myaddr, mylun, clientaddr, clientlun, clientseq, sockaddr)
            elif data[19] == 0x54 and len(data) >= 23:  # Get Channel Cipher Suites
                self._send_cipher_suites(myaddr, mylun, clientaddr, clientlun, clientseq, data[22] & 0x3F, sockaddr)

        def _send_cipher_suites(self, myaddr, mylun, clientaddr, clientlun, clientseq, index, sockaddr):
            records = _SUITE_RECORDS[index * 16 : index * 16 + 16]
            ipmihdr = bytearray([clientaddr, clientlun | (7 << 2)])
            ipmihdr.append(ipmisession._checksum(*ipmihdr))
            body = bytearray([myaddr, mylun | (clientseq << 2), 0x54, CC_OK, LAN_CHANNEL]) + records
            body.append(ipmisession._checksum(*body))
            message = ipmihdr + body
            header = bytearray(b"\x06\x00\xff\x07\x06\x00" + b"\x00" * 8) + struct.pack("<H", len(message))
            ipmisession._io_sendto(self.serversocket, header + message, sockaddr)

        # -- commands ---------------------------------------------------------

        def handle_raw_request(self, request, session):
            netfn, command = request["netfn"], request["command"]
            needed = self._privileges.get((netfn, command), USER)
            if session.clientpriv < needed:
                return session.send_ipmi_response(code=CC_INSUFFICIENT_PRIVILEGE)
            handler = self._handlers.get((netfn, command))
            if handler is None:
                return super().handle_raw_request(request, session)
            try:
                code, data = handler(self, bytes(request["data"]))
            except (IndexError, ValueError):
                code, data = CC_INVALID_DATA, []
            session.send_ipmi_response(data=list(data), code=code)

        def _channel(self, data_byte):
            channel = data_byte & 0x0F
            if channel == 0x0E:
                channel = LAN_CHANNEL
            if channel != LAN_CHANNEL:
                raise ValueError(channel)
            return channel

        def _user_id(self, data_byte):
            uid = data_byte & 0x3F
            if not self.users.valid_id(uid):
                raise ValueError(uid)
            return uid

        def cmd_get_system_guid(self, data):
            return CC_OK, self.uuid.bytes_le

        def cmd_get_channel_access(self, data):
            self._channel(data[0])
            # always available; privilege limit ADMINISTRATOR
            return CC_OK, [0x02, ADMINISTRATOR]

        def cmd_get_channel_info(self, data):
            channel = self._channel(data[0])
            # 802.3 LAN, IPMB-1.0 protocol, multi-session, IPMI's IANA number
            return CC_OK, [channel, 0x04, 0x01, 0x80, 0xF2, 0x1B, 0x00, 0x00, 0x00]

        def cmd_get_channel_cipher_suites(self, data):
            channel = self._channel(data[0])
            index = data[2] & 0x3F
            return CC_OK, bytes([channel]) + _SUITE_RECORDS[index * 16 : index * 16 + 16]

        def cmd_get_user_access(self, data):
            self._channel(data[0])
            uid = self._user_id(data[1])
            user = self.users.users[uid]
            status = 0x40 if user["enabled"] else 0x80
            access = (
                (0x40 if user["callback_only"] else 0)
                | (0x20 if user["link"] else 0)
                | (0x10 if user["ipmi"] else 0)
                | user["privilege"]
            )
            return CC_OK, [MAX_USERS, status | self.users.enabled_count(), 1, access]

        def cmd_set_user_access(self, data):
            self._channel(data[0])
            uid = self._user_id(data[1])
            privilege = data[2] & 0x0F
            if privilege not in PRIVILEGE_NAMES and privilege != NO_ACCESS:
                raise ValueError(privilege)
            user = self.users.users[uid]
            if data[0] & 0x80:
                user["callback_only"] = bool(data[0] & 0x40)
                user["link"] = bool(data[0] & 0x20)
                user["ipmi"] = bool(data[0] & 0x10)
            user["privilege"] = privilege
            self.note("user {} access: {}".format(uid, {k: user[k] for k in ("privilege", "ipmi", "link")}))
            self.save()
            return CC_OK, []

        def cmd_set_user_name(self, data):
            uid = self._user_id(data[0])
            if uid == 1 or len(data) < 17:
                return CC_INVALID_DATA, []  # the null user's name is fixed
            name = data[1:17].rstrip(b"\x00").decode("utf-8")
            self.users.users[uid]["name"] = name
            self.note("user {} name: {!r}".format(uid, name))
            self.save()
            return CC_OK, []

        def cmd_get_user_name(self, data):
            uid = self._user_id(data[0])
            name = self.users.users[uid]["name"].encode("utf-8")
            return CC_OK, name.ljust(16, b"\x00")

        def cmd_set_user_password(self, data):
            uid = self._user_id(data[0])
            twenty = bool(data[0] & 0x80)
            operation = data[1] & 0x03
            user = self.users.users[uid]
            if operation == 0:
                user["enabled"] = False
            elif operation == 1:
                user["enabled"] = True
            else:
                size = 20 if twenty else 16
                if len(data) != 2 + size:
                    return 0xC7, []  # request data length invalid
                password = data[2:].rstrip(b"\x00").decode("utf-8")
                if operation == 2:
                    user["password"] = password
                elif user["password"] != password:
                    return 0x80, []  # password test failed
                else:
                    return CC_OK, []
            self.note("user {} {}".format(uid, ("disabled", "enabled", "password set")[operation]))
            self.save()
            return CC_OK, []

        def cmd_get_chassis_status(self, data):
            return CC_OK, [1 if self.power_state == "on" else 0, 0, 0, 0]

        def cmd_chassis_control(self, data):
            directive = data[0] & 0x0F
            if directive in (0, 5):  # power down, soft shutdown
                self.power_state = "off"
            elif directive in (1, 2):  # power up, power cycle
                self.power_state = "on"
            elif directive in (3, 4):  # hard reset, diagnostic interrupt: no change
                pass
            else:
                return CC_INVALID_DATA, []
            self.note("chassis control {}: power {}".format(directive, self.power_state))
            self.save()
            return CC_OK, []

        # pyghmi's Bmc API, for its own handlers (boot options)
        def get_power_state(self):
            return self.power_state

        def get_boot_device(self):
            return self.boot_device

        def set_boot_device(self, bootdevice):
            self.boot_device = bootdevice
            self.note("boot device: {}".format(bootdevice))
            self.save()

        _handlers = {
            (6, 0x37): cmd_get_system_guid,
            (6, 0x41): cmd_get_channel_access,
            (6, 0x42): cmd_get_channel_info,
            (6, 0x43): cmd_set_user_access,
            (6, 0x44): cmd_get_user_access,
            (6, 0x45): cmd_set_user_name,
            (6, 0x46): cmd_get_user_name,
            (6, 0x47): cmd_set_user_password,
            (6, 0x54): cmd_get_channel_cipher_suites,
            (0, 0x01): cmd_get_chassis_status,
            (0, 0x02): cmd_chassis_control,
        }
        _privileges = {
            (6, 0x43): ADMINISTRATOR,
            (6, 0x44): OPERATOR,
            (6, 0x45): ADMINISTRATOR,
            (6, 0x46): OPERATOR,
            (6, 0x47): ADMINISTRATOR,
            (0, 0x02): OPERATOR,
            (0, 0x08): OPERATOR,
        }

        def serve(self, parent_pid=None):
            """Answer clients until the process is killed (or ``parent_pid`` is gone)."""
            while parent_pid is None or _alive(parent_pid):
                try:
                    ipmisession.Session.wait_for_rsp(timeout=1)
                except Exception:
                    # one malformed packet must not take the BMC down
                    traceback.print_exc()

    return SimulatedSession, SimulatedBMC


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def initial_users(user, password, user_id=2):
    """A table with one ADMINISTRATOR account in slot ``user_id``."""
    users = UserTable()
    users.users[user_id].update(
        name=user, password=password, enabled=True, privilege=ADMINISTRATOR, ipmi=True, link=True
    )
    return users


def make_bmc(user, password, address="127.0.0.1", port=623, user_id=2, state_file=None, verbose=False):
    """A listening :class:`SimulatedBMC` (call ``serve()`` to answer)."""
    _, cls = _server_classes()
    users = initial_users(user, password, user_id)
    return cls(users, address=address, port=port, state_file=state_file, verbose=verbose)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m devenv.bmc", description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=623, help="UDP port; 0 picks a free one (printed)")
    parser.add_argument("--user", default="admin", help="the initial ADMINISTRATOR account")
    parser.add_argument("--password", default="password")
    parser.add_argument("--user-id", type=int, default=2, help="the slot of the initial account (default 2)")
    parser.add_argument(
        "--state-file", help="JSON file keeping users, power state and boot device (if it exists, it wins over --user)"
    )
    parser.add_argument("--verbose", action="store_true", help="print logins and changes")
    parser.add_argument("--parent-pid", type=int, help="exit when this process is gone")
    args = parser.parse_args(argv)
    if not 2 <= args.user_id <= MAX_USERS:
        parser.error("--user-id must be in 2..{}".format(MAX_USERS))
    server = make_bmc(
        args.user, args.password, address=args.address, port=args.port, user_id=args.user_id,
        state_file=args.state_file, verbose=args.verbose,
    )
    print("ready {} {}".format(server.address, server.port), flush=True)
    try:
        server.serve(args.parent_pid)
    except KeyboardInterrupt:
        return 0


# -- for tests: one simulator as a subprocess ----------------------------------------


class BMCProcess:
    """A simulator in a subprocess: ``start()``/``stop()`` or ``with BMCProcess(...) as bmc``.

    :param port: UDP port; None lets the simulator bind a free one (no race).
    ``state()`` reads the state file (users, power, boot device).
    """

    def __init__(self, port=None, user="admin", password="password", user_id=2, workdir=None, verbose=True):
        self.address = "127.0.0.1"
        self.port = port
        self.user = user
        self.password = password
        self.user_id = user_id
        self.verbose = verbose
        self._own_workdir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix="inspectord-bmc-")
        self.state_file = os.path.join(self.workdir, "bmc-state.json")
        self.log_path = os.path.join(self.workdir, "bmc.log")
        self.process = None

    def command(self):
        argv = [
            sys.executable, "-m", "devenv.bmc", "--address", self.address,
            "--port", str(self.port or 0), "--user", self.user, "--password", self.password,
            "--user-id", str(self.user_id), "--state-file", self.state_file, "--parent-pid", str(os.getpid()),
        ]
        if self.verbose:
            argv.append("--verbose")
        return argv

    def start(self, timeout=30):
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, start_new_session=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        log.close()
        deadline = time.monotonic() + timeout
        line = self._readline(deadline)
        if not line.startswith("ready"):
            self.stop()
            raise RuntimeError("the BMC simulator did not start: {!r}\n{}".format(line, self.log_tail()))
        self.port = int(line.split()[2])
        # the rest of stdout (its --verbose notes) goes to the log
        self._drain = _Drain(self.process.stdout, self.log_path)
        return self

    def _readline(self, deadline):
        import selectors

        with selectors.DefaultSelector() as sel:
            sel.register(self.process.stdout, selectors.EVENT_READ)
            if not sel.select(max(0, deadline - time.monotonic())):
                return ""
        return self.process.stdout.readline().decode(errors="replace").strip()

    def stop(self, timeout=10):
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        drain = getattr(self, "_drain", None)
        if drain is not None:
            drain.join()
        self.process.stdout.close()

    def cleanup(self):
        self.stop()
        if self._own_workdir:
            import shutil

            shutil.rmtree(self.workdir, ignore_errors=True)

    def state(self):
        with open(self.state_file, encoding="utf-8") as f:
            return json.load(f)

    def log_tail(self, lines=40):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def ipmitool_argv(self, *args, user=None, cipher_suite=None):
        """``ipmitool -I lanplus ... ARGS`` against this simulator; the password goes in ``IPMI_PASSWORD``."""
        return lanplus_argv(self.address, self.port, user or self.user, cipher_suite) + list(args)

    def ipmitool(self, *args, user=None, password=None, cipher_suite=None, timeout=60):
        """Run ipmitool (blocking) against this simulator, by default as the initial admin."""
        argv = self.ipmitool_argv(*args, user=user, cipher_suite=cipher_suite)
        return subprocess.run(
            argv, env=ipmitool_env(password or self.password), stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=timeout,
        )

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()


class _Drain:
    """Copies a pipe to a file in a thread until EOF (so the child never blocks on a full pipe)."""

    def __init__(self, pipe, path):
        import threading

        self._thread = threading.Thread(target=self._run, args=(pipe, path), daemon=True, name="bmc-log")
        self._thread.start()

    @staticmethod
    def _run(pipe, path):
        with open(path, "ab") as out:
            for line in iter(pipe.readline, b""):
                out.write(line)
                out.flush()

    def join(self):
        self._thread.join(5)


if __name__ == "__main__":
    sys.exit(main())
