"""Ramdisk data, processing hooks, root device hints and ramdisk logs."""

import base64
import copy
import datetime
import io
import json
import os
import tarfile

from twisted.trial.unittest import SynchronousTestCase

from inspectord import errors
from inspectord.api.status import status_for
from inspectord import bmc_address
from inspectord.processing import data as ramdisk_data
from inspectord.processing import hints, ramdisk_logs
from inspectord.processing import hooks as hooks_mod
from inspectord.processing.update import NodeUpdate
from inspectord.store.records import NodeRecord
from tests.unit.helpers import fixture, make_config

GiB = 1024**3
UUID = "1be26c0b-03f2-4d2e-ae87-c02d7f33c123"
T0 = datetime.datetime(2027, 1, 15, 8, 0, 0, 123456)

PXE_MAC = "52:54:00:00:00:01"
ACTIVE_MAC = "52:54:00:00:00:02"
NO_IP_MAC = "52:54:00:00:00:03"
LO_MAC = "00:00:00:00:00:00"
IB_MAC = "a0:00:02:20:fe:80:00:00:00:00:00:00:00:02:c9:03:00:a0:b1:c2"
OLD_MAC = "52:54:00:aa:aa:aa"


def disk(name, size_gib, **extra):
    return dict({"name": name, "size": size_gib * GiB, "rotational": True, "model": "QEMU HARDDISK",
                 "serial": "serial-" + name.rsplit("/", 1)[-1]}, **extra)


def inventory_data(interfaces=None, disks=None, pxe=PXE_MAC, root_disk=None, **inventory):
    """IPA data with several interfaces of different kinds."""
    if interfaces is None:
        interfaces = [
            {"name": "eth0", "mac_address": PXE_MAC.upper(), "ipv4_address": "192.0.2.10"},
            {"name": "eth1", "mac_address": ACTIVE_MAC, "ipv4_address": None, "ipv6_address": "fe80::2%eth1"},
            {"name": "eth2", "mac_address": NO_IP_MAC, "ipv4_address": None},
            {"name": "lo", "mac_address": LO_MAC, "ipv4_address": "127.0.0.1"},
            {"name": "ib0", "mac_address": IB_MAC, "ipv4_address": "198.51.100.7", "client_id": "ff:00:00:00:00"},
        ]
    inv = {
        "interfaces": interfaces,
        "disks": disks if disks is not None else [disk("/dev/vda", 100)],
        "cpu": {"count": 4, "architecture": "aarch64", "flags": ["vmx", "aes"]},
        "memory": {"physical_mb": 8192},
        "boot": {"current_boot_mode": "uefi", "pxe_interface": pxe},
        "bmc_address": "192.0.2.200",
    }
    inv.update(inventory)
    data = {"inventory": inv}
    if root_disk is not None:
        data["root_disk"] = root_disk
    return data


class HookTestCase(SynchronousTestCase):
    def run_hooks(self, data, properties=None, ports=None, provision_state="manageable", **overrides):
        """Run every configured hook the way Introspection does; (data, update)."""
        config = make_config(**overrides)
        record = NodeRecord(
            uuid=UUID,
            state="processing",
            started_at=T0,
            node={"name": "n1", "provision_state": provision_state, "properties": properties or {}},
            ports={mac.lower(): dict(p) for mac, p in (ports or {}).items()},
        )
        data = ramdisk_data.normalize(copy.deepcopy(data))
        hooks = hooks_mod.load(config)
        for hook in hooks:
            hook.before_processing(data)
        node = hooks_mod.NodeContext(record, config)
        for hook in hooks:
            hook.before_update(data, node)
        return data, node.update

    def new_port_macs(self, update):
        return sorted(p["address"] for p in update.new_ports)


class NormalizeTests(SynchronousTestCase):
    def test_ipa_fixture(self):
        raw = fixture("ipa-payload.json")
        data = ramdisk_data.normalize(raw)
        self.assertIsNot(data, raw)
        self.assertIs(data["inventory"], raw["inventory"])
        self.assertNotIn("legacy_format", data)
        self.assertEqual(ramdisk_data.all_macs(data), ["02:fc:00:00:00:01"])
        self.assertEqual(bmc_address.from_ramdisk(data), [])
        self.assertIsNone(ramdisk_data.pxe_mac(data))

    def test_legacy_fixture(self):
        data = ramdisk_data.normalize(fixture("legacy-ramdisk.json"))
        self.assertTrue(data["legacy_format"])
        inventory = data["inventory"]
        self.assertEqual(inventory["cpu"], {"count": 8, "architecture": "x86_64"})
        self.assertEqual(inventory["memory"], {"physical_mb": 16384})
        self.assertEqual(
            [(i["name"], i["mac_address"], i["ipv4_address"]) for i in inventory["interfaces"]],
            [("eth0", "52:54:00:12:34:56", "192.0.2.10"), ("eth1", "52:54:00:12:34:57", None)],
        )
        self.assertEqual([d["serial"] for d in inventory["disks"]], ["S3Z9NB0K123456", "S3Z9NB0K654321"])
        self.assertEqual(ramdisk_data.all_macs(data), ["52:54:00:12:34:56", "52:54:00:12:34:57"])
        self.assertEqual(bmc_address.from_ramdisk(data), ["192.0.2.200"])
        self.assertEqual(ramdisk_data.pxe_mac(data), "52:54:00:12:34:56")

    def test_legacy_ipv6_interface(self):
        data = ramdisk_data.normalize({"interfaces": {"eth0": {"mac": PXE_MAC, "ip": "2001:db8::5"}}})
        iface = data["inventory"]["interfaces"][0]
        self.assertEqual((iface["ipv4_address"], iface["ipv6_address"]), (None, "2001:db8::5"))

    def test_error_only(self):
        raw = fixture("ipa-payload-no-inventory-error.json")
        self.assertEqual(ramdisk_data.normalize(raw), raw)

    def test_rejected(self):
        cases = [
            ([1, 2], "expected a JSON object, got list"),
            (None, "got NoneType"),
            ("text", "got str"),
            ({}, "neither an 'inventory'"),
            ({"inventory": []}, "'inventory' must be an object"),
            ({"inventory": {"interfaces": "eth0"}}, "'interfaces' must be a list"),
            ({"inventory": {"interfaces": ["eth0"]}}, "every inventory interface must be an object"),
            ({"inventory": {"interfaces": [], "disks": {}}}, "'disks' must be a list"),
            ({"inventory": {"interfaces": [], "disks": [None]}}, "every inventory disk must be an object"),
            ({"inventory": {"interfaces": [], "cpu": 4}}, "'cpu' must be an object"),
            ({"inventory": {"interfaces": [], "memory": [1]}}, "'memory' must be an object"),
            ({"interfaces": {"eth0": "52:54:00:00:00:01"}}, "interface 'eth0' must be an object"),
        ]
        for raw, message in cases:
            with self.assertRaises(errors.InvalidInput) as caught:
                ramdisk_data.normalize(raw)
            self.assertIn(message, caught.exception.message, raw)
            self.assertEqual(status_for(caught.exception), 400)


class DataFunctionTests(SynchronousTestCase):
    def test_is_valid_mac(self):
        self.assertTrue(ramdisk_data.is_valid_mac("52:54:00:12:34:56"))
        self.assertTrue(ramdisk_data.is_valid_mac("52:54:00:AB:CD:EF"))
        self.assertTrue(ramdisk_data.is_valid_mac(IB_MAC), "InfiniBand 20-byte address")
        for bad in ("52:54:00:12:34", "52-54-00-12-34-56", "zz:54:00:12:34:56", "", None, 525400123456,
                    "52:54:00:12:34:56:78"):
            self.assertFalse(ramdisk_data.is_valid_mac(bad), bad)

    def test_pxe_mac(self):
        self.assertEqual(ramdisk_data.pxe_mac({"boot_interface": "52:54:00:AB:CD:EF"}), "52:54:00:ab:cd:ef")
        self.assertEqual(ramdisk_data.pxe_mac({"boot_interface": "01-52-54-00-ab-cd-ef"}), "52:54:00:ab:cd:ef")
        self.assertEqual(
            ramdisk_data.pxe_mac({"boot_interface": None, "inventory": {"boot": {"pxe_interface": PXE_MAC}}}), PXE_MAC
        )
        self.assertIsNone(ramdisk_data.pxe_mac({"inventory": {"boot": {"pxe_interface": None}}}))
        self.assertIsNone(ramdisk_data.pxe_mac({"boot_interface": 5}))

    def test_bmc_addresses(self):
        self.assertEqual(
            bmc_address.from_ramdisk({"inventory": {"bmc_address": "192.0.2.1", "bmc_v6address": "fd00::1"}}),
            ["192.0.2.1", "fd00::1"],
        )
        self.assertEqual(
            bmc_address.from_ramdisk({"inventory": {"bmc_address": "0.0.0.0", "bmc_v6address": "fd00::1"}}),
            ["fd00::1"],
        )
        self.assertEqual(
            bmc_address.from_ramdisk({"inventory": {"bmc_address": "192.0.2.1", "bmc_v6address": "::/0"}}),
            ["192.0.2.1"],
        )
        self.assertEqual(bmc_address.from_ramdisk({"ipmi_address": "192.0.2.9"}), ["192.0.2.9"])
        self.assertEqual(bmc_address.from_ramdisk({}), [])

    def test_all_macs(self):
        data = inventory_data()
        data["inventory"]["interfaces"].append({"name": "bad", "mac_address": "nope"})
        self.assertEqual(
            ramdisk_data.all_macs(data), [PXE_MAC, ACTIVE_MAC, NO_IP_MAC, LO_MAC, IB_MAC]
        )


class SchedulerAndRootDiskTests(HookTestCase):
    def test_ipa_fixture(self):
        data, update = self.run_hooks(fixture("ipa-payload.json"))
        self.assertEqual(
            update.properties,
            {
                "cpus": "2",
                "cpu_arch": "x86_64",
                "memory_mb": "24576",
                "local_gb": "255",
                "capabilities": "cpu_aes:true,cpu_hugepages_1g:true,cpu_hugepages:true",
            },
        )
        self.assertEqual(data["local_gb"], 255)
        # No port was recorded for the node: its one interface gets one.
        self.assertEqual(update.new_ports, [{"address": "02:fc:00:00:00:01", "pxe_enabled": True}])
        self.assertEqual(data["macs"], ["02:fc:00:00:00:01"])

    def test_legacy_fixture(self):
        data, update = self.run_hooks(fixture("legacy-ramdisk.json"))
        self.assertEqual(
            {k: update.properties[k] for k in ("cpus", "cpu_arch", "memory_mb", "local_gb")},
            {"cpus": "8", "cpu_arch": "x86_64", "memory_mb": "16384", "local_gb": "446"},
        )
        self.assertEqual(data["ipmi_address"], "192.0.2.200")

    def test_no_disks(self):
        data, update = self.run_hooks(inventory_data(disks=[]))
        self.assertEqual(update.properties["local_gb"], "0")
        data, update = self.run_hooks(dict(inventory_data(), inventory=dict(inventory_data()["inventory"], disks=None)))
        self.assertEqual(update.properties["local_gb"], "0")

    def test_root_disk_from_ramdisk(self):
        _, update = self.run_hooks(inventory_data(root_disk=disk("/dev/sda", 40)))
        self.assertEqual(update.properties["local_gb"], "39")

    def test_no_partitioning_spacing(self):
        _, update = self.run_hooks(
            inventory_data(root_disk=disk("/dev/sda", 40)), processing__disk_partitioning_spacing=False
        )
        self.assertEqual(update.properties["local_gb"], "40")

    def test_size_hint(self):
        disks = [disk("/dev/vda", 256), disk("/dev/vdb", 500), disk("/dev/vdc", 1000)]
        cases = {">= 300": "499", "> 500": "999", "<= 256": "255", "< 300": "255", "== 500": "499",
                 "1000": "999", "!= 256": "499"}
        for expression, local_gb in cases.items():
            data, update = self.run_hooks(
                inventory_data(disks=disks, root_disk=disks[0]), properties={"root_device": {"size": expression}}
            )
            self.assertEqual(update.properties["local_gb"], local_gb, expression)
        _, update = self.run_hooks(inventory_data(disks=disks), properties={"root_device": {"size": 500}})
        self.assertEqual(update.properties["local_gb"], "499")

    def test_name_hint_without_dev(self):
        disks = [disk("/dev/vda", 256), disk("/dev/vdb", 500)]
        data, update = self.run_hooks(inventory_data(disks=disks), properties={"root_device": {"name": "vdb"}})
        self.assertEqual(data["root_disk"]["name"], "/dev/vdb")
        self.assertEqual(update.properties["local_gb"], "499")

    def test_no_disk_matches(self):
        with self.assertRaises(errors.ProcessingError) as caught:
            self.run_hooks(inventory_data(), properties={"root_device": {"size": ">= 2000"}})
        self.assertIn("No disks satisfied root device hints", caught.exception.message)

    def test_invalid_hints(self):
        with self.assertRaises(errors.ProcessingError) as caught:
            self.run_hooks(inventory_data(), properties={"root_device": {"colour": "blue"}})
        self.assertIn("failed to validate", caught.exception.message)
        self.assertIn("colour", caught.exception.message)
        self.assertRaises(
            errors.ProcessingError, self.run_hooks, inventory_data(), properties={"root_device": {"size": "big"}}
        )

    def test_skip_block_devices(self):
        disks = [disk("/dev/vda", 256), disk("/dev/vdb", 500), disk("/dev/vdc", 1000)]
        data, update = self.run_hooks(
            inventory_data(disks=disks),
            properties={"root_device": {"size": ">= 300"}, "skip_block_devices": [{"name": "/dev/vdb"}]},
        )
        self.assertEqual(data["root_disk"]["name"], "/dev/vdc")
        with self.assertRaises(errors.ProcessingError):
            self.run_hooks(
                inventory_data(disks=disks),
                properties={"root_device": {"size": ">= 300"},
                            "skip_block_devices": [{"size": ">= 400"}]},
            )

    def test_overwrite_existing_false(self):
        _, update = self.run_hooks(
            inventory_data(root_disk=disk("/dev/vda", 100)),
            properties={"cpus": "64", "local_gb": "10"},
            processing__overwrite_existing=False,
        )
        self.assertNotIn("cpus", update.properties)
        self.assertNotIn("local_gb", update.properties)
        self.assertEqual(update.properties["memory_mb"], "8192")
        self.assertEqual(update.properties["cpu_arch"], "aarch64")

    def test_overwrite_existing_true(self):
        _, update = self.run_hooks(inventory_data(), properties={"cpus": "64"})
        self.assertEqual(update.properties["cpus"], "4")

    def test_malformed_cpu_and_memory(self):
        data = inventory_data(cpu={"count": "many"}, memory={})
        _, update = self.run_hooks(data)
        for key in ("cpus", "cpu_arch", "memory_mb"):
            self.assertNotIn(key, update.properties)
        self.assertIn("local_gb", update.properties)


class InterfaceTests(HookTestCase):
    def test_add_ports_pxe(self):
        data, update = self.run_hooks(inventory_data())
        self.assertEqual(update.new_ports, [{"address": PXE_MAC, "pxe_enabled": True}])
        self.assertEqual(data["macs"], [PXE_MAC])
        self.assertEqual(data["ipmi_address"], "192.0.2.200")

    def test_add_ports_pxe_without_boot_interface(self):
        """Boot interface unknown: every interface with an IP counts as PXE."""
        data, update = self.run_hooks(inventory_data(pxe=None))
        self.assertEqual(self.new_port_macs(update), sorted([PXE_MAC, ACTIVE_MAC, IB_MAC]))
        self.assertTrue(all(p["pxe_enabled"] for p in update.new_ports))

    def test_add_ports_active(self):
        _, update = self.run_hooks(inventory_data(), processing__add_ports="active")
        self.assertEqual(self.new_port_macs(update), sorted([PXE_MAC, ACTIVE_MAC, IB_MAC]))
        pxe = {p["address"]: p["pxe_enabled"] for p in update.new_ports}
        self.assertEqual(pxe, {PXE_MAC: True, ACTIVE_MAC: False, IB_MAC: False})

    def test_add_ports_all(self):
        data, update = self.run_hooks(inventory_data(), processing__add_ports="all")
        self.assertEqual(self.new_port_macs(update), sorted([PXE_MAC, ACTIVE_MAC, NO_IP_MAC, IB_MAC]))
        self.assertNotIn("lo", data["interfaces"])
        self.assertIn("lo", data["all_interfaces"])

    def test_add_ports_disabled(self):
        data, update = self.run_hooks(inventory_data(), processing__add_ports="disabled")
        self.assertEqual(update.new_ports, [])
        self.assertEqual(sorted(data["macs"]), sorted([PXE_MAC, ACTIVE_MAC, IB_MAC]))

    def test_infiniband_client_id(self):
        _, update = self.run_hooks(inventory_data(pxe=IB_MAC))
        self.assertEqual(
            update.new_ports, [{"address": IB_MAC, "pxe_enabled": True, "extra": {"client-id": "ff:00:00:00:00"}}]
        )

    def test_loopback_skipped(self):
        interfaces = [{"name": "lo", "mac_address": LO_MAC, "ipv4_address": "127.0.0.1"},
                      {"name": "eth9", "mac_address": PXE_MAC, "ipv4_address": "127.0.0.2"}]
        with self.assertRaises(errors.ProcessingError) as caught:
            self.run_hooks(inventory_data(interfaces=interfaces, pxe=None), processing__add_ports="all")
        self.assertIn("No suitable interfaces found in eth9, lo", caught.exception.message)

    def test_existing_port_not_created(self):
        _, update = self.run_hooks(
            inventory_data(), ports={PXE_MAC: {"uuid": "p1", "pxe_enabled": True}}, processing__add_ports="active"
        )
        self.assertEqual(self.new_port_macs(update), sorted([ACTIVE_MAC, IB_MAC]))
        self.assertEqual(update.port_patches, {})

    def test_no_interfaces(self):
        with self.assertRaises(errors.ProcessingError) as caught:
            self.run_hooks(inventory_data(interfaces=[]))
        self.assertIn("No network interfaces provided", caught.exception.message)
        with self.assertRaises(errors.ProcessingError):
            self.run_hooks(inventory_data(interfaces=[{"name": "eth0", "mac_address": "bogus"}]))

    EXISTING = {
        PXE_MAC: {"uuid": "port-pxe", "pxe_enabled": True},
        NO_IP_MAC: {"uuid": "port-noip", "pxe_enabled": False},
        OLD_MAC: {"uuid": "port-old", "pxe_enabled": True},
    }

    def test_keep_ports_all(self):
        _, update = self.run_hooks(inventory_data(), ports=self.EXISTING)
        self.assertEqual(update.deleted_ports, [])

    def test_keep_ports_present(self):
        _, update = self.run_hooks(inventory_data(), ports=self.EXISTING, processing__keep_ports="present")
        self.assertEqual(update.deleted_ports, ["port-old"])

    def test_keep_ports_added(self):
        _, update = self.run_hooks(inventory_data(), ports=self.EXISTING, processing__keep_ports="added")
        self.assertEqual(sorted(update.deleted_ports), ["port-noip", "port-old"])

    def test_keep_ports_active_node(self):
        _, update = self.run_hooks(
            inventory_data(), ports=self.EXISTING, provision_state="active", processing__keep_ports="added",
            processing__permit_active_introspection=True,
        )
        self.assertEqual(update.deleted_ports, [])

    def test_update_pxe_enabled(self):
        ports = {PXE_MAC: {"uuid": "port-pxe", "pxe_enabled": False},
                 ACTIVE_MAC: {"uuid": "port-active", "pxe_enabled": True},
                 IB_MAC: {"uuid": "port-ib", "pxe_enabled": False}}
        _, update = self.run_hooks(inventory_data(), ports=ports, processing__add_ports="active")
        self.assertEqual(
            update.port_patches,
            {
                "port-pxe": [{"op": "replace", "path": "/pxe_enabled", "value": True}],
                "port-active": [{"op": "replace", "path": "/pxe_enabled", "value": False}],
            },
        )
        _, update = self.run_hooks(
            inventory_data(), ports=ports, processing__add_ports="active", processing__update_pxe_enabled=False
        )
        self.assertEqual(update.port_patches, {})
        _, update = self.run_hooks(
            inventory_data(), ports=ports, processing__add_ports="active", processing__overwrite_existing=False
        )
        self.assertEqual(update.port_patches, {})


class CapabilityTests(HookTestCase):
    def test_cpu_flags(self):
        _, update = self.run_hooks(inventory_data())
        self.assertEqual(update.properties["capabilities"], "cpu_aes:true,cpu_vt:true")

    def test_boot_mode_and_existing(self):
        _, update = self.run_hooks(
            inventory_data(), properties={"capabilities": "profile:compute,boot_mode:bios"},
            capabilities__boot_mode=True,
        )
        self.assertEqual(
            hooks_mod.parse_capabilities(update.properties["capabilities"]),
            {"profile": "compute", "boot_mode": "uefi", "cpu_aes": "true", "cpu_vt": "true"},
        )

    def test_custom_flags(self):
        _, update = self.run_hooks(inventory_data(), capabilities__cpu_flags={"aes": "has_aes"})
        self.assertEqual(update.properties["capabilities"], "has_aes:true")

    def test_no_capabilities(self):
        data = inventory_data(cpu={"count": 1, "architecture": "x86_64", "flags": ["fpu"]})
        _, update = self.run_hooks(data)
        self.assertNotIn("capabilities", update.properties)

    def test_parse_capabilities(self):
        self.assertEqual(hooks_mod.parse_capabilities("a:1, b:x:y,junk"), {"a": "1", "b": "x:y"})
        self.assertEqual(hooks_mod.parse_capabilities({"a": True}), {"a": "True"})
        self.assertEqual(hooks_mod.parse_capabilities(None), {})

    def test_pci_devices(self):
        aliases = [
            json.dumps({"vendor_id": "1af4", "product_id": "1041", "name": "virtio_net"}),
            json.dumps({"vendor_id": "8086", "product_id": "0D57", "name": "host_bridge"}),
            json.dumps({"vendor_id": "10de", "product_id": "1eb8", "name": "tesla_t4"}),
        ]
        _, update = self.run_hooks(fixture("ipa-payload-all-collectors.json"), pci_devices__alias=aliases)
        caps = hooks_mod.parse_capabilities(update.properties["capabilities"])
        self.assertEqual(caps["virtio_net"], "1")
        self.assertEqual(caps["host_bridge"], "1")
        self.assertNotIn("tesla_t4", caps)

    def test_pci_devices_counts(self):
        data = inventory_data()
        data["pci_devices"] = [{"vendor_id": "10DE", "product_id": "1eb8"}] * 3
        alias = json.dumps({"vendor_id": "10de", "product_id": "1eb8", "name": "tesla_t4"})
        _, update = self.run_hooks(data, pci_devices__alias=[alias])
        self.assertEqual(hooks_mod.parse_capabilities(update.properties["capabilities"])["tesla_t4"], "3")

    def test_parse_pci_alias(self):
        self.assertEqual(
            hooks_mod.parse_pci_alias('{"vendor_id": "1", "product_id": "2", "name": "n"}')["name"], "n"
        )
        self.assertRaises(ValueError, hooks_mod.parse_pci_alias, "not json")
        self.assertRaises(ValueError, hooks_mod.parse_pci_alias, '{"vendor_id": "1"}')


class RamdiskErrorAndHookLoadingTests(HookTestCase):
    def test_ramdisk_error(self):
        with self.assertRaises(errors.ProcessingError) as caught:
            self.run_hooks(fixture("ipa-payload-collector-error.json"))
        self.assertIn("Ramdisk reported error: The following errors were encountered", caught.exception.message)
        self.assertIn("dmidecode", caught.exception.message)

    def test_resolve(self):
        classes = hooks_mod.resolve(["scheduler", "ramdisk_error"])
        self.assertEqual([c.name for c in classes], ["scheduler", "ramdisk_error"])
        self.assertRaises(KeyError, hooks_mod.resolve, ["scheduler", "nope"])

    def test_load_follows_config(self):
        hooks = hooks_mod.load(make_config(processing__processing_hooks="scheduler,capabilities"))
        self.assertEqual([h.name for h in hooks], ["scheduler", "capabilities"])

    def test_node_update(self):
        update = NodeUpdate()
        self.assertTrue(update.empty)
        update.properties.update(memory_mb="1", cpus="2")
        update.node_patch.append({"op": "add", "path": "/extra/x", "value": 1})
        self.assertFalse(update.empty)
        self.assertEqual(
            update.node_operations(),
            [
                {"op": "add", "path": "/properties/cpus", "value": "2"},
                {"op": "add", "path": "/properties/memory_mb", "value": "1"},
                {"op": "add", "path": "/extra/x", "value": 1},
            ],
        )


class HintTests(SynchronousTestCase):
    DISKS = [
        {"name": "/dev/sda", "size": 100 * GiB, "rotational": True, "model": "Samsung SSD 860",
         "vendor": "ATA", "serial": "S1", "wwn": "0x5000"},
        {"name": "/dev/sdb", "size": 500 * GiB, "rotational": False, "model": "INTEL SSDSC2",
         "vendor": "ATA", "serial": "S2", "wwn": None},
        {"name": "/dev/nvme0n1", "size": 1000 * GiB, "rotational": False, "model": "Micron 7300",
         "vendor": None, "serial": "S3"},
    ]

    def names(self, found):
        return [d["name"] for d in found]

    def test_size_operators(self):
        cases = {"100": ["/dev/sda"], "== 500": ["/dev/sdb"], "!= 100": ["/dev/sdb", "/dev/nvme0n1"],
                 ">= 500": ["/dev/sdb", "/dev/nvme0n1"], "> 500": ["/dev/nvme0n1"],
                 "<= 500": ["/dev/sda", "/dev/sdb"], "< 100": [], 1000: ["/dev/nvme0n1"]}
        for expression, expected in cases.items():
            self.assertEqual(self.names(hints.find_devices(self.DISKS, {"size": expression})), expected, expression)

    def test_size_counts_whole_gib(self):
        self.assertTrue(hints.matches({"size": 100 * GiB + 5}, {"size": "100"}))
        self.assertFalse(hints.matches({"size": None}, {"size": "100"}))

    def test_string_operators(self):
        cases = [
            ({"model": "samsung   ssd 860"}, ["/dev/sda"]),
            ({"model": "s== INTEL SSDSC2"}, ["/dev/sdb"]),
            ({"vendor": "s!= ATA"}, []),
            ({"model": "<in> SSD"}, ["/dev/sda", "/dev/sdb"]),
            ({"serial": "<or> S1 <or> S3"}, ["/dev/sda", "/dev/nvme0n1"]),
            ({"wwn": "0x5000"}, ["/dev/sda"]),
        ]
        for hint, expected in cases:
            self.assertEqual(self.names(hints.find_devices(self.DISKS, hint)), expected, hint)

    def test_name_with_and_without_dev(self):
        for name in ("sdb", "/dev/sdb", "s== sdb"):
            self.assertEqual(self.names(hints.find_devices(self.DISKS, {"name": name})), ["/dev/sdb"], name)
        self.assertEqual(
            self.names(hints.find_devices(self.DISKS, {"name": "<or> sda <or> nvme0n1"})), ["/dev/sda", "/dev/nvme0n1"]
        )

    def test_rotational(self):
        self.assertEqual(self.names(hints.find_devices(self.DISKS, {"rotational": True})), ["/dev/sda"])
        self.assertEqual(
            self.names(hints.find_devices(self.DISKS, {"rotational": "false"})), ["/dev/sdb", "/dev/nvme0n1"]
        )
        self.assertRaises(ValueError, hints.find_devices, self.DISKS, {"rotational": "sometimes"})

    def test_combined_hints_are_and(self):
        found = hints.match_root_device(self.DISKS, {"rotational": False, "size": ">= 600"})
        self.assertEqual(found["name"], "/dev/nvme0n1")

    def test_first_match_or_none(self):
        self.assertEqual(hints.match_root_device(self.DISKS, {"vendor": "ata"})["name"], "/dev/sda")
        self.assertIsNone(hints.match_root_device(self.DISKS, {"serial": "S9"}))
        self.assertIsNone(hints.match_root_device([], {"size": 1}))

    def test_validate(self):
        self.assertRaises(ValueError, hints.validate, ["size"])
        with self.assertRaises(ValueError) as caught:
            hints.validate({"size": 1, "colour": "red", "flavour": "x"})
        self.assertIn("colour, flavour", str(caught.exception))
        with self.assertRaises(ValueError) as caught:
            hints.match_root_device(self.DISKS, {"size": ">= lots"})
        self.assertIn("not a number of GiB", str(caught.exception))


class RamdiskLogTests(SynchronousTestCase):
    def options(self, directory, **kwargs):
        return make_config(processing__ramdisk_logs_dir=directory, **kwargs).processing

    def test_store_fixture_logs(self):
        directory = self.mktemp()
        data = fixture("ipa-payload.json")
        path = ramdisk_logs.thd_store(self.options(directory), data, UUID, T0)
        self.assertEqual(path, os.path.join(directory, UUID + "_20270115-080000.123456.tar.gz"))
        with open(path, "rb") as f:
            content = f.read()
        self.assertEqual(content, base64.b64decode(data["logs"]))
        with tarfile.open(fileobj=io.BytesIO(content)) as tar:
            self.assertIn("journal", tar.getnames())

    def test_unknown_node(self):
        directory = self.mktemp()
        path = ramdisk_logs.thd_store(self.options(directory), fixture("ipa-payload.json"), None, T0)
        self.assertEqual(os.path.basename(path), "unknown_20270115-080000.123456.tar.gz")

    def test_filename_format_fields(self):
        options = self.options(self.mktemp(), processing__ramdisk_logs_filename_format="{mac}_{bmc}_{uuid}.tgz")
        data = dict(fixture("legacy-ramdisk.json"), logs=base64.b64encode(b"x").decode())
        self.assertEqual(os.path.basename(ramdisk_logs.thd_store(options, data, UUID, T0)),
                         "525400123456_192.0.2.200_{}.tgz".format(UUID))
        self.assertEqual(ramdisk_logs.file_name(options, {}, None, T0), "unknown_unknown_unknown.tgz")

    def test_nothing_to_store(self):
        directory = self.mktemp()
        self.assertIsNone(ramdisk_logs.thd_store(self.options(directory), {"inventory": {}}, UUID, T0))
        self.assertIsNone(ramdisk_logs.thd_store(self.options(None), fixture("ipa-payload.json"), UUID, T0))
        self.assertFalse(os.path.exists(directory))

    def test_invalid_base64(self):
        directory = self.mktemp()
        self.assertIsNone(ramdisk_logs.thd_store(self.options(directory), {"logs": "abc"}, UUID, T0))
        self.assertFalse(os.path.exists(directory))

    def test_unwritable_directory(self):
        blocker = self.mktemp()
        with open(blocker, "w") as f:
            f.write("a file where the directory should be")
        self.assertIsNone(ramdisk_logs.thd_store(self.options(blocker), fixture("ipa-payload.json"), UUID, T0))
