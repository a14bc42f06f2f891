"""The BMC simulator's pure parts: the ramdisk's command sequence and the user table."""

from twisted.trial import unittest

from devenv import bmc


class SetCredentialsArgvTests(unittest.SynchronousTestCase):
    def test_sequence(self):
        argvs = bmc.set_credentials_argv("127.0.0.1", 6230, "admin", "Adm1nSecret", 3, "newuser", "newpass")
        base = ["ipmitool", "-I", "lanplus", "-H", "127.0.0.1", "-p", "6230", "-U", "admin", "-E"]
        self.assertEqual(
            argvs,
            [
                base + ["user", "set", "name", "3", "newuser"],
                base + ["user", "set", "password", "3", "newpass"],
                base + ["user", "enable", "3"],
                base + ["channel", "setaccess", "1", "3", "link=on", "ipmi=on", "callin=on", "privilege=4"],
            ],
        )
        # the admin password travels in the environment, not in argv
        self.assertNotIn("Adm1nSecret", [a for argv in argvs for a in argv])
        self.assertEqual(bmc.ipmitool_env("Adm1nSecret", base={}), {"IPMI_PASSWORD": "Adm1nSecret"})


class UserTableTests(unittest.SynchronousTestCase):
    def test_initial_admin(self):
        users = bmc.initial_users("admin", "password", user_id=2)
        self.assertEqual(users.login_user("admin")["privilege"], bmc.ADMINISTRATOR)
        self.assertIsNone(users.login_user(""))  # the null user is disabled
        self.assertEqual(users.enabled_count(), 1)

    def test_login_needs_every_step(self):
        users = bmc.UserTable()
        user = users.users[3]
        for change in (
            {"name": "newuser"},
            {"password": "newpass"},
            {"enabled": True},
            {"ipmi": True},
        ):
            self.assertIsNone(users.login_user("newuser"))
            user.update(change)
        self.assertIsNone(users.login_user("newuser"))  # privilege limit still NO ACCESS
        user["privilege"] = bmc.ADMINISTRATOR
        self.assertIs(users.login_user("newuser"), user)

    def test_round_trip(self):
        users = bmc.initial_users("root", "calvin", user_id=5)
        again = bmc.UserTable(users.as_dict())
        self.assertEqual(again.as_dict(), users.as_dict())
        self.assertEqual(again.login_user("root")["password"], "calvin")
