"""The builtin DHCP server: packets (scapy), leases, replies, the UDP protocol, the driver."""

import datetime

from twisted.internet import defer, task
from twisted.trial.unittest import SynchronousTestCase

from inspectord import errors
from inspectord import pxe
from inspectord.dhcp import packets, server, sniffer
from inspectord.pxe.builtin import BuiltinDriver
from inspectord.pxe.decisions import FilterState
from inspectord.store import SQLStore, make_engine
from inspectord.store.pool import SynchronousPool
from tests.unit.helpers import make_config

A, B, C = "52:54:00:00:00:0a", "52:54:00:00:00:0b", "52:54:00:00:00:0c"
SERVER = "10.9.0.1"
OPTIONS = server.ServerOptions(
    server_address=SERVER, range_start="10.9.0.100", range_end="10.9.0.102", router="10.9.0.254",
    dns_servers=("10.9.0.53",), lease_time=600,
)


def discover_payload(mac, xid=7, arch=None, user_class=None, relay=None):
    """A client's DISCOVER as the UDP payload a server socket receives."""
    from scapy.all import BOOTP, DHCP

    packet = packets.discover(mac, xid, arch=arch)[BOOTP]
    if relay:
        packet.giaddr = relay
    if user_class:
        options = [o for o in packet[DHCP].options if o != "end"] + [("user_class", user_class), "end"]
        packet[DHCP].options = options
    return bytes(packet)


def request_payload(mac, ip, server_id=SERVER, xid=8):
    from scapy.all import BOOTP, DHCP

    options = [("message-type", "request"), ("requested_addr", ip)]
    if server_id:
        options.append(("server_id", server_id))
    return bytes(BOOTP(chaddr=packets.mac_bytes(mac) + b"\0" * 10, xid=xid) / DHCP(options=options + ["end"]))


def parse_reply(payload):
    from scapy.all import BOOTP

    return packets.parse(BOOTP(payload)), packets.options(BOOTP(payload))


class PacketTests(SynchronousTestCase):
    def test_parse_discover(self):
        request = packets.parse_request(discover_payload(A, xid=42, arch=7))
        self.assertEqual((request.mac, request.xid, request.kind, request.arch), (A, 42, "discover", 7))
        self.assertFalse(request.ipxe)
        self.assertEqual(request.flags, 0x8000)

    def test_ipxe_user_class(self):
        self.assertTrue(packets.parse_request(discover_payload(A, user_class=b"iPXE")).ipxe)

    def test_not_requests(self):
        self.assertIsNone(packets.parse_request(b"garbage"))
        self.assertIsNone(packets.parse_request(b""))
        offer = packets.build_reply(packets.parse_request(discover_payload(A)), packets.Reply(kind="offer"))
        self.assertIsNone(packets.parse_request(offer))  # op 2: a reply, not a request

    def test_reply_roundtrip(self):
        request = packets.parse_request(discover_payload(A, xid=99))
        reply = packets.Reply(
            kind="offer", yiaddr="10.9.0.100", siaddr="10.9.0.2", server_id=SERVER, boot_file="snponly.efi",
            lease_time=600, netmask="255.255.255.0", router="10.9.0.254", dns=("10.9.0.53",),
        )
        parsed, options = parse_reply(packets.build_reply(request, reply))
        self.assertEqual(
            (parsed["mac"], parsed["op"], parsed["type"], parsed["xid"], parsed["yiaddr"], parsed["siaddr"],
             parsed["server"], parsed["file"]),
            (A, 2, "offer", 99, "10.9.0.100", "10.9.0.2", SERVER, "snponly.efi"),
        )
        self.assertEqual((options["lease_time"], options["renewal_time"]), (600, 300))
        self.assertEqual((options["router"], options["name_server"]), ("10.9.0.254", "10.9.0.53"))
        self.assertNotIn("vendor_class_id", options)

    def test_proxy_reply_says_pxeclient(self):
        request = packets.parse_request(discover_payload(A))
        _, options = parse_reply(packets.build_reply(request, packets.Reply(kind="offer", pxe_client=True)))
        self.assertEqual(options["vendor_class_id"], b"PXEClient")
        self.assertEqual(options["vendor_specific"], b"\x06\x01\x08\xff")


class BootFileTests(SynchronousTestCase):
    def test_by_architecture_and_ipxe(self):
        cases = [(None, None, "undionly.kpxe"), (0, None, "undionly.kpxe"), (7, None, "snponly.efi"),
                 (9, None, "snponly.efi"), (11, None, "snponly-arm64.efi"), (7, b"iPXE", "inspector.ipxe")]
        for arch, user_class, expected in cases:
            request = packets.parse_request(discover_payload(A, arch=arch, user_class=user_class))
            self.assertEqual(server.boot_file(request, OPTIONS), expected, (arch, user_class))


class LeaseTests(SynchronousTestCase):
    def setUp(self):
        self.persisted = []
        self.leases = server.Leases("10.9.0.100", "10.9.0.102", 600,
                                    persist=lambda *a: self.persisted.append(a))

    def test_pool_in_order_then_exhausted(self):
        self.assertEqual([self.leases.offer(m, 0) for m in (A, B, C)], ["10.9.0.100", "10.9.0.101", "10.9.0.102"])
        self.assertIsNone(self.leases.offer("52:54:00:00:00:0d", 0))
        self.assertEqual(self.leases.offer(B, 10), "10.9.0.101")  # same client, same address

    def test_offer_hold_expires(self):
        self.leases.offer(A, 0)
        self.assertEqual(self.leases.offer(B, server.OFFER_HOLD - 1), "10.9.0.101")
        self.assertEqual(self.leases.offer(C, server.OFFER_HOLD + 1), "10.9.0.100")

    def test_requested_address_honoured_if_free(self):
        self.assertEqual(self.leases.offer(A, 0, requested="10.9.0.102"), "10.9.0.102")
        self.assertEqual(self.leases.offer(B, 0, requested="10.9.0.102"), "10.9.0.100")
        self.assertEqual(self.leases.offer(C, 0, requested="192.0.2.1"), "10.9.0.101")

    def test_grant(self):
        ip = self.leases.offer(A, 0)
        self.assertTrue(self.leases.grant(A, ip, 5))
        self.assertEqual(self.persisted, [(A, ip, 605)])
        self.assertFalse(self.leases.grant(B, ip, 6))
        self.assertFalse(self.leases.grant(B, "10.9.0.200", 6))
        self.assertTrue(self.leases.grant(B, ip, 606))  # A's lease expired
        self.leases.release(B)
        self.assertNotIn(B, self.leases.by_mac)


class ResponderTests(SynchronousTestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.seen = []
        self.state = FilterState(frozenset({A, B}), frozenset({C}), False)
        self.leases = server.Leases(OPTIONS.range_start, OPTIONS.range_end, OPTIONS.lease_time)
        self.responder = server.DHCPResponder(
            OPTIONS, self.leases, lambda mac: self.state.allows(mac), self.clock,
            seen=lambda *a: self.seen.append(a),
        )

    def handle(self, payload):
        return self.responder.handle(packets.parse_request(payload))

    def test_denied_get_nothing_and_are_seen(self):
        self.assertIsNone(self.handle(discover_payload(C)))
        self.assertIsNone(self.handle(discover_payload("52:54:00:ff:ff:ff")))
        self.assertEqual(self.seen, [(C, "discover", False), ("52:54:00:ff:ff:ff", "discover", False)])
        self.assertEqual(self.leases.by_mac, {})

    def test_discover_request_ack(self):
        offer = self.handle(discover_payload(A, arch=7))
        self.assertEqual((offer.kind, offer.yiaddr, offer.server_id, offer.boot_file), ("offer", "10.9.0.100", SERVER, "snponly.efi"))
        ack = self.handle(request_payload(A, "10.9.0.100"))
        self.assertEqual((ack.kind, ack.yiaddr, ack.lease_time), ("ack", "10.9.0.100", 600))
        self.assertEqual(self.seen[-1], (A, "request", True))

    def test_request_for_another_server_releases(self):
        self.handle(discover_payload(A))
        self.assertIsNone(self.handle(request_payload(A, "10.9.0.100", server_id="10.9.0.77")))
        self.assertNotIn(A, self.leases.by_mac)

    def test_request_for_address_held_by_another_is_nak(self):
        self.handle(discover_payload(A))
        self.assertEqual(self.handle(request_payload(B, "10.9.0.100")).kind, "nak")

    def test_filter_change_applies_to_next_packet(self):
        self.assertIsNotNone(self.handle(discover_payload(A)))
        self.state = FilterState(frozenset(), frozenset({A, B, C}), False)
        self.assertIsNone(self.handle(discover_payload(A)))

    def test_proxy_mode(self):
        options = server.ServerOptions(server_address=SERVER, mode="proxy", next_server="10.9.0.2")
        responder = server.DHCPResponder(options, None, lambda mac: mac == A, self.clock)
        plain = packets.parse_request(discover_payload(A))
        self.assertIsNone(responder.handle(plain))  # not a PXE client: the real DHCP server's business
        pxe_client = packets.Request(mac=A, xid=1, kind="discover", pxe=True, arch=0)
        reply = responder.handle(pxe_client)
        self.assertEqual((reply.kind, reply.yiaddr, reply.siaddr, reply.boot_file, reply.pxe_client),
                         ("offer", "0.0.0.0", "10.9.0.2", "undionly.kpxe", True))
        self.assertIsNone(responder.handle(packets.Request(mac=B, xid=1, kind="discover", pxe=True)))

    def test_options_validated(self):
        self.assertRaises(ValueError, server.ServerOptions, server_address="nope", range_start="10.0.0.1", range_end="10.0.0.2")
        self.assertRaises(ValueError, server.ServerOptions, server_address=SERVER, range_start="10.0.0.9", range_end="10.0.0.2")
        self.assertRaises(ValueError, server.ServerOptions, server_address=SERVER, mode="relay")


class FakeUDPTransport:
    def __init__(self):
        self.sent = []

    def write(self, data, addr):
        self.sent.append((data, addr))


class ProtocolTests(SynchronousTestCase):
    def setUp(self):
        responder = server.DHCPResponder(
            OPTIONS, server.Leases(OPTIONS.range_start, OPTIONS.range_end, 600), lambda mac: mac == A, task.Clock()
        )
        self.protocol = server.DHCPProtocol(responder)
        self.transport = FakeUDPTransport()
        self.protocol.makeConnection(self.transport)

    def test_offer_broadcast_to_client_port(self):
        self.protocol.datagramReceived(discover_payload(A, xid=5), ("0.0.0.0", 68))
        [(data, addr)] = self.transport.sent
        self.assertEqual(addr, ("255.255.255.255", 68))
        parsed, _ = parse_reply(data)
        self.assertEqual((parsed["type"], parsed["xid"], parsed["mac"]), ("offer", 5, A))

    def test_relayed_request_answered_to_relay(self):
        self.protocol.datagramReceived(discover_payload(A, relay="10.8.0.1"), ("10.8.0.1", 67))
        self.assertEqual(self.transport.sent[0][1], ("10.8.0.1", 67))

    def test_denied_and_garbage_silent(self):
        self.protocol.datagramReceived(discover_payload(B), ("0.0.0.0", 68))
        self.protocol.datagramReceived(b"\x01garbage", ("0.0.0.0", 68))
        self.assertEqual(self.transport.sent, [])


class FakeSocket:
    def __init__(self):
        self.closed = False

    def fileno(self):
        return 99

    def close(self):
        self.closed = True


class FakePort:
    def __init__(self, proto):
        self.protocol = proto
        self.stopped = False

    def stopListening(self):
        self.stopped = True


class AdoptingClock(task.Clock):
    def __init__(self):
        super().__init__()
        self.adopted = []

    def adoptDatagramPort(self, fileno, family, proto):
        port = FakePort(proto)
        self.adopted.append((fileno, port))
        return port


class DriverTests(SynchronousTestCase):
    def setUp(self):
        self.reactor = AdoptingClock()
        self.reactor.advance(1_800_000_000)
        self.store = SQLStore(make_engine("sqlite://"), SynchronousPool())
        self.store.upgrade()
        self.sockets = []

    def open_socket(self, interface):
        self.assertEqual(interface, "br-pxe")
        sock = FakeSocket()
        self.sockets.append(sock)
        return sock

    def driver(self, open_socket=None):
        return BuiltinDriver(self.reactor, OPTIONS, "br-pxe", self.store, open_socket=open_socket or self.open_socket)

    def apply(self, driver, state):
        self.successResultOf(defer.ensureDeferred(driver.apply(state)))

    def serve(self, driver, payload):
        transport = FakeUDPTransport()
        proto = driver.port.protocol
        proto.transport = transport
        proto.datagramReceived(payload, ("0.0.0.0", 68))
        return [parse_reply(data)[0] for data, _ in transport.sent]

    def test_opens_once_and_follows_the_state(self):
        driver = self.driver()
        self.apply(driver, FilterState(frozenset({A}), frozenset(), False))
        self.apply(driver, FilterState(frozenset({A, B}), frozenset(), False))
        self.assertEqual(len(self.reactor.adopted), 1)
        self.assertTrue(self.sockets[0].closed)  # the port keeps its own descriptor
        self.assertEqual(len(self.serve(driver, discover_payload(B))), 1)
        self.assertEqual(driver.seen.get(B), {"last_dhcp_request": 1_800_000_000, "dhcp_message": "discover",
                                              "allowed_by_filter": True})
        self.apply(driver, FilterState(frozenset({A}), frozenset({B}), False))
        self.assertEqual(self.serve(driver, discover_payload(B)), [])
        self.assertFalse(driver.seen.get(B)["allowed_by_filter"])
        self.successResultOf(defer.ensureDeferred(driver.stop()))
        self.assertTrue(self.reactor.adopted[0][1].stopped)
        self.assertFalse(driver.allows(A))

    def test_socket_failure_fails_the_apply_and_is_retried(self):
        def refuse(interface):
            raise PermissionError(13, "Permission denied")

        driver = self.driver(open_socket=refuse)
        self.failureResultOf(defer.ensureDeferred(driver.apply(FilterState())), PermissionError)
        driver._open_socket = self.open_socket
        self.apply(driver, FilterState())
        self.assertEqual(len(self.reactor.adopted), 1)

    def test_leases_survive_restart(self):
        state = FilterState(frozenset({A, B}), frozenset(), False)
        first = self.driver()
        self.apply(first, state)
        self.serve(first, discover_payload(B))  # B is offered .100 but never asks for it
        self.serve(first, discover_payload(A))
        [ack] = self.serve(first, request_payload(A, "10.9.0.101"))
        self.assertEqual((ack["type"], ack["yiaddr"]), ("ack", "10.9.0.101"))
        rows = self.successResultOf(self.store.dhcp_leases())
        self.assertEqual(rows, [(A, "10.9.0.101", datetime.datetime(2027, 1, 15, 8, 10))])
        self.successResultOf(defer.ensureDeferred(first.stop()))
        second = self.driver()
        self.apply(second, state)
        [offer] = self.serve(second, discover_payload(A))
        self.assertEqual(offer["yiaddr"], "10.9.0.101")


class MakeDriverTests(SynchronousTestCase):
    def test_builtin_from_config(self):
        config = make_config(
            pxe_filter__driver="builtin", builtin_dhcp__server_address=SERVER, builtin_dhcp__range_start="10.9.0.100",
            builtin_dhcp__range_end="10.9.0.200", iptables__dnsmasq_interface="br-pxe",
        )
        driver = pxe.make_driver(config, task.Clock(), runner=object())
        self.assertIsInstance(driver, BuiltinDriver)
        self.assertEqual((driver.interface, driver.options.range_end, driver.options.siaddr), ("br-pxe", "10.9.0.200", SERVER))

    def test_builtin_config_errors(self):
        cases = [
            ({}, "server_address"),
            ({"builtin_dhcp__server_address": SERVER}, "range_start"),
            ({"builtin_dhcp__server_address": SERVER, "builtin_dhcp__range_start": "10.9.0.9",
              "builtin_dhcp__range_end": "10.9.0.1"}, "range_end"),
        ]
        for overrides, named in cases:
            config = make_config(pxe_filter__driver="builtin", **overrides)
            with self.assertRaises(errors.ConfigError) as caught:
                pxe.make_driver(config, task.Clock(), runner=object())
            self.assertIn(named, str(caught.exception))
        proxy = make_config(pxe_filter__driver="builtin", builtin_dhcp__mode="proxy", builtin_dhcp__server_address=SERVER)
        self.assertEqual(pxe.make_driver(proxy, task.Clock(), runner=object()).options.mode, "proxy")


class FakeThreadReactor(task.Clock):
    def __init__(self):
        super().__init__()
        self.from_thread = []

    def callFromThread(self, f, *args):
        self.from_thread.append((f, args))


class SnifferTests(SynchronousTestCase):
    """The diagnosis: DHCP requests seen on the wire, with the filter's verdict."""

    def test_seen_is_bounded_oldest_first(self):
        seen = sniffer.DHCPSeen(max_macs=2)
        seen.record(A, "discover", False, 1)
        seen.record(B, "discover", True, 2)
        seen.record(A, "request", True, 3)  # A is now the newest
        seen.record(C, "discover", False, 4)
        self.assertIsNone(seen.get(B))
        self.assertEqual(seen.get(A), {"last_dhcp_request": 3, "dhcp_message": "request", "allowed_by_filter": True})
        self.assertEqual(len(seen), 2)

    def test_client_requests_only(self):
        from scapy.all import BOOTP, Ether, IP, UDP

        frame = Ether(bytes(packets.discover(A, 5)))
        self.assertEqual(sniffer.client_request(frame), (A, "discover"))
        offer = packets.build_reply(packets.parse_request(discover_payload(B)), packets.Reply(kind="offer"))
        reply_frame = Ether() / IP() / UDP(sport=67, dport=68) / BOOTP(offer)
        self.assertIsNone(sniffer.client_request(reply_frame))
        self.assertIsNone(sniffer.client_request(Ether() / IP() / UDP(sport=1, dport=2)))

    def test_packets_recorded_in_the_reactor_thread_with_the_verdict(self):
        reactor = FakeThreadReactor()
        reactor.advance(100)
        sniff = sniffer.DHCPSniffer(reactor, "br-pxe", lambda mac: mac == A)
        sniff._packet(packets.discover(A, 1))
        sniff._packet(packets.discover(B, 2))
        self.assertEqual(len(sniff.seen), 0)  # not from the sniffer thread
        for f, args in reactor.from_thread:
            f(*args)
        self.assertTrue(sniff.seen.get(A)["allowed_by_filter"])
        self.assertFalse(sniff.seen.get(B)["allowed_by_filter"])
        self.assertEqual(sniff.seen.get(B)["last_dhcp_request"], 100)

    def test_cannot_open_is_logged_not_fatal(self):
        def refuse(interface):
            raise PermissionError(1, "Operation not permitted")

        sniff = sniffer.DHCPSniffer(task.Clock(), "br-pxe", lambda mac: False, open_socket=refuse)
        sniff.startService()
        self.assertIn("Operation not permitted", sniff.error)
        self.assertIsNone(sniff.stopService())

    def test_filter_service_reports_what_was_seen(self):
        config = make_config(pxe_filter__driver="nftables", dhcp_sniffer__enabled=True,
                             iptables__dnsmasq_interface="br-pxe")
        store = SQLStore(make_engine("sqlite://"), SynchronousPool())
        filt = pxe.make_filter(config, store, object(), task.Clock())
        [child] = [s for s in filt if isinstance(s, sniffer.DHCPSniffer)]
        self.assertEqual(child.interface, "br-pxe")
        self.assertIsNone(filt.dhcp_seen(A))
        child.seen.record(A, "discover", False, 5)
        self.assertEqual(filt.dhcp_seen(A)["last_dhcp_request"], 5)
        self.assertEqual(filt.health()["dhcp_macs_seen"], 1)
        without = pxe.make_filter(make_config(pxe_filter__driver="nftables"), store, object(), task.Clock())
        self.assertFalse([s for s in without if isinstance(s, sniffer.DHCPSniffer)])
        self.assertIsNone(without.dhcp_seen(A))
