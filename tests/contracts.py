"""Contract tests: the same scenarios against a real implementation and its fake.

Each scenario is a coroutine taking the object under test and an
environment; a test case class says how to run a coroutine (synchronously
over ``StubTreq`` in unit tests, on the real reactor against real servers in
integration tests) and how to make the environment.
"""

from zope.interface.verify import verifyObject

from inspectord import errors, interfaces

BMC = "192.0.2.77"  # documentation range: only ever a string in driver_info


class IronicContract:
    """:class:`inspectord.interfaces.IIronic`: the fake Ironic behaves as Ironic for every call inspectord makes.

    Subclasses provide ``run_scenario(coroutine_function)`` and an ``env`` with
    ``client`` (an :class:`IronicClient`), ``add_node(name, macs,
    driver_info)`` returning the new node's UUID, and ``new_macs(n)``.
    """

    def test_provides(self):
        self.assertTrue(verifyObject(interfaces.IIronic, self.env.client))

    def test_get_node_by_uuid_and_name(self):
        async def scenario(client, env):
            name = env.unique("contract")
            uuid = env.add_node(name, env.new_macs(1))
            by_uuid = await client.get_node(uuid)
            by_name = await client.get_node(name)
            self.assertEqual((by_uuid["uuid"], by_name["uuid"]), (uuid, uuid))
            self.assertEqual(by_uuid["name"], name)
            with self.assertRaises(errors.IronicNotFound):
                await client.get_node(env.unique("missing"))

        return self.run_scenario(scenario)

    def test_ports(self):
        async def scenario(client, env):
            macs = env.new_macs(2)
            uuid = env.add_node(env.unique("ports"), macs[:1])
            listed = await client.list_ports(uuid)
            self.assertEqual([p["address"] for p in listed], macs[:1])
            self.assertIn(macs[0], await client.list_all_port_macs())
            self.assertEqual((await client.find_port(macs[0]))["node_uuid"], uuid)
            self.assertIsNone(await client.find_port(macs[1]))

            created = await client.create_port(uuid, macs[1], pxe_enabled=False)
            self.assertEqual((created["address"], created["pxe_enabled"]), (macs[1], False))
            again = await client.create_port(uuid, macs[1])  # a retried create: the same port
            self.assertEqual(again["uuid"], created["uuid"])

            other = env.add_node(env.unique("other"), env.new_macs(1))
            # Another node's MAC: skipped (None), as ironic-inspector did; that node keeps it.
            self.assertIsNone(await client.create_port(other, macs[0]))
            self.assertEqual((await client.find_port(macs[0]))["node_uuid"], uuid)

            await client.patch_port(created["uuid"], [
                {"op": "add", "path": "/local_link_connection/port_id", "value": "Ethernet1/7"},
                {"op": "add", "path": "/local_link_connection/switch_id", "value": "52:54:00:5e:00:01"},
                {"op": "add", "path": "/physical_network", "value": "physnet1"},
            ])
            port = next(p for p in await client.list_ports(
                uuid, fields="uuid,address,local_link_connection,physical_network") if p["address"] == macs[1])
            self.assertEqual(port["local_link_connection"], {"port_id": "Ethernet1/7", "switch_id": "52:54:00:5e:00:01"})
            # Ironic's schema: a port_id needs the switch it is on.
            with self.assertRaises(errors.IronicError) as raised:
                await client.patch_port(created["uuid"], [
                    {"op": "remove", "path": "/local_link_connection/switch_id"}])
            self.assertEqual(raised.exception.status, 400)
            self.assertEqual(port["physical_network"], "physnet1")

            await client.delete_port(created["uuid"])
            self.assertEqual([p["address"] for p in await client.list_ports(uuid)], macs[:1])

        return self.run_scenario(scenario)

    def test_patch_node_as_rfc_6902(self):
        async def scenario(client, env):
            uuid = env.add_node(env.unique("patch"), env.new_macs(1))
            node = await client.patch_node(uuid, [
                {"op": "add", "path": "/properties/cpus", "value": 4},
                {"op": "add", "path": "/extra/inspected", "value": True},
            ])
            self.assertEqual((node["properties"]["cpus"], node["extra"]["inspected"]), (4, True))
            for bad in ({"op": "remove", "path": "/properties/nothing"},
                        {"op": "add", "path": "/extra/a/b", "value": 1},
                        {"op": "add", "path": "/no_such_field", "value": 1}):
                with self.assertRaises(errors.IronicError) as raised:
                    await client.patch_node(uuid, [bad])
                self.assertEqual(raised.exception.status, 400, bad)
                self.assertFalse(raised.exception.retriable)
            self.assertEqual((await client.get_node(uuid))["properties"]["cpus"], 4)

        return self.run_scenario(scenario)

    def test_traits(self):
        async def scenario(client, env):
            uuid = env.add_node(env.unique("traits"), env.new_macs(1))
            await client.add_trait(uuid, "CUSTOM_INSPECTED")
            self.assertEqual((await client.get_node(uuid))["traits"], ["CUSTOM_INSPECTED"])
            await client.remove_trait(uuid, "CUSTOM_INSPECTED")
            await client.remove_trait(uuid, "CUSTOM_NEVER_SET")  # no error
            self.assertEqual((await client.get_node(uuid))["traits"], [])

        return self.run_scenario(scenario)

    def test_power_and_boot_device(self):
        async def scenario(client, env):
            uuid = env.add_node(env.unique("power"), env.new_macs(1))
            self.assertEqual((await client.validate_power(uuid))[0], True)
            await client.set_boot_device_pxe(uuid)
            await client.set_power_state(uuid, "power on")
            with self.assertRaises(errors.IronicNotFound):
                await client.set_power_state(env.unique("missing"), "power on")

        return self.run_scenario(scenario)

    def test_lookup_by_bmc_and_listing(self):
        async def scenario(client, env):
            address = env.unique_bmc()
            uuid = env.add_node(env.unique("bmc"), env.new_macs(1), driver_info={"ipmi_address": address})
            self.assertEqual(await client.find_node_by_bmc({address}, ["ipmi_address"]), [uuid])
            self.assertEqual(await client.find_node_by_bmc({address}, ["redfish_address"]), [])
            listed = await client.list_nodes("uuid,name")
            self.assertIn(uuid, [n["uuid"] for n in listed])

        return self.run_scenario(scenario)

    def test_create_node(self):
        async def scenario(client, env):
            name = env.unique("created")
            node = await client.create_node({"name": name, "driver": "fake-hardware"})
            env.created(node["uuid"])
            self.assertEqual(node["provision_state"], "enroll")
            self.assertEqual((await client.get_node(name))["uuid"], node["uuid"])

        return self.run_scenario(scenario)


class PXEFilterContract:
    """:class:`inspectord.interfaces.IPXEFilter` as the lifecycle and diagnosis use it.

    Subclasses provide ``make_filter(store, recording=False)`` (a filter
    recording DHCP requests when ``recording``), ``record_dhcp(pxe_filter,
    mac, kind, allowed, when)`` (a request the filter saw) and
    ``run_scenario(scenario, recording=False)``; ``self.store`` is a migrated store.
    """

    MAC = "52:54:00:c0:00:01"

    def test_provides(self):
        self.assertTrue(verifyObject(interfaces.IPXEFilter, self.make_filter(self.store)))

    def test_allows_what_the_store_has_under_introspection(self):
        async def scenario(pxe_filter, env):
            self.assertTrue(await pxe_filter.sync())
            self.assertFalse(pxe_filter.allows(self.MAC))
            await self.store.start("c1", env.now, True, {}, {}, [("mac", self.MAC)])
            pxe_filter.notify()
            self.assertTrue(await pxe_filter.sync(full=False))
            self.assertTrue(pxe_filter.allows(self.MAC))
            self.assertTrue(pxe_filter.allows(self.MAC.upper()))

        return self.run_scenario(scenario)

    def test_recording_nothing_reports_nothing(self):
        async def scenario(pxe_filter, env):
            self.assertIsNone(pxe_filter.seen)
            self.assertIsNone(pxe_filter.dhcp_seen(self.MAC))

        return self.run_scenario(scenario)

    def test_recorded_request_reported(self):
        """What diagnosis reads: ``seen`` is not None, ``dhcp_seen`` the latest request."""

        async def scenario(pxe_filter, env):
            self.assertIsNotNone(pxe_filter.seen)
            self.assertIsNone(pxe_filter.dhcp_seen(self.MAC))
            self.record_dhcp(pxe_filter, self.MAC, "discover", False, 1_800_000_000)
            self.record_dhcp(pxe_filter, self.MAC, "request", True, 1_800_000_005)
            self.assertEqual(
                pxe_filter.dhcp_seen(self.MAC),
                {"last_dhcp_request": 1_800_000_005, "dhcp_message": "request", "allowed_by_filter": True},
            )

        return self.run_scenario(scenario, recording=True)

    def test_diagnosis_and_health(self):
        async def scenario(pxe_filter, env):
            self.assertIsNone(pxe_filter.dhcp_seen(self.MAC))  # nothing recorded
            health = pxe_filter.health()
            self.assertIn("driver", health)
            self.assertIn(health["state"], ("starting", "ok", "stopped"))

        return self.run_scenario(scenario)


class VerifierContract:
    """:class:`inspectord.interfaces.ICredentialsVerifier`.

    Subclasses provide ``make_verifier(bmcs)`` where ``bmcs`` maps
    ``(address, port)`` to the ``(username, password)`` it accepts, and ``run_scenario``.
    """

    def test_provides(self):
        self.assertTrue(verifyObject(interfaces.ICredentialsVerifier, self.make_verifier({})))

    def test_accepted_rejected_unreachable(self):
        from inspectord.ipmi import BMCUnreachable, CredentialsRejected

        async def scenario(verifier, env):
            await verifier.verify(BMC, "admin", "right", port=623)
            with self.assertRaises(CredentialsRejected):
                await verifier.verify(BMC, "admin", "wrong", port=623)
            with self.assertRaises(BMCUnreachable):
                await verifier.verify("192.0.2.78", "admin", "right", port=623)

        return self.run_scenario(scenario, {(BMC, 623): ("admin", "right")})
