"""inspectord's policy decisions equal ironic-inspector 12.5.0's (oslo.policy), persona by persona.

ironic-inspector 12.5.0 (and its oslo.policy) runs in its own cached venv;
a script there registers ironic-inspector's own rule defaults, loads the
same policy file and answers ``authorize(rule, {}, creds)`` for every rule
and persona.  The defaults, the deprecated defaults
(``enforce_new_defaults = False``) and a policy file using every part of the
check-string language inspectord implements must give the same answers.
"""

import json
import os
import subprocess

from twisted.trial import unittest

from inspectord.api import authz
from devenv.venvs import ensure_venv
from tests.integration.base import SKIP

INSPECTOR_VENV = "ironic-inspector-12.5.0"
INSPECTOR_REQUIREMENTS = ["ironic-inspector==12.5.0"]

PERSONAS = {
    "system_admin": {"roles": ["admin", "member", "reader"], "system_scope": "all"},
    "project_admin": {"roles": ["admin", "member", "reader"], "project_id": "p1"},
    "project_admin_not_admin_project": {"roles": ["admin"], "project_id": "p2", "is_admin_project": False},
    "service": {"roles": ["service"], "project_id": "service"},
    "system_reader": {"roles": ["reader"], "system_scope": "all"},
    "project_reader": {"roles": ["reader"], "project_id": "p1"},
    "member": {"roles": ["member", "reader"], "project_id": "p1"},
    "mixed_case": {"roles": ["Admin"], "project_id": "p1"},
    "no_roles": {"roles": []},
    "baremetal_admin": {"roles": ["baremetal_admin"], "project_id": "p1"},
    "baremetal_observer": {"roles": ["baremetal_observer"], "project_id": "p1"},
    "administrator": {"roles": ["administrator"], "project_id": "p1"},
}
for _creds in PERSONAS.values():
    _creds.setdefault("system_scope", None)
    _creds.setdefault("project_id", None)
    _creds.setdefault("is_admin_project", True)
    _creds.setdefault("user_id", "u1")
    _creds["is_public_api"] = False

RULES = [d.name for d in authz.DEFAULTS]

CUSTOM = {
    "introspection:status": "role:member or (role:reader and system_scope:all)",
    "introspection:start": "not role:member and (rule:is_admin or role:service)",
    "introspection:abort": "@",
    "introspection:data": "!",
    "introspection:reapply": "is_admin_project:True and role:admin",
    "introspection:rule:get": "user_id:%(user_id)s or role:READER",
    "introspection:rule:create": "project_id:p1 and not (role:reader or role:baremetal_observer)",
    "introspection:rule:delete": "'p1':%(project)s or rule:is_observer",
    "is_observer": "role:baremetal_observer or role:administrator",
}

_SCRIPT = r"""
import json, sys
from oslo_config import cfg
from oslo_policy import policy as oslo_policy
from ironic_inspector import policy as inspector_policy

spec = json.load(sys.stdin)
conf = cfg.ConfigOpts()
conf([], project="inspectord-compare")
enforcer = oslo_policy.Enforcer(conf, policy_file=spec["policy_file"], use_conf=True)
conf.set_override("enforce_new_defaults", spec["enforce_new_defaults"], "oslo_policy")
enforcer.suppress_default_change_warnings = True
enforcer.suppress_deprecation_warnings = True
enforcer.register_defaults(list(inspector_policy.list_policies()))
enforcer.load_rules()
answers = {}
for persona, creds in spec["personas"].items():
    for rule in spec["rules"]:
        answers[persona + " " + rule] = bool(enforcer.authorize(rule, {}, creds))
print(json.dumps(answers))
"""


class UpstreamPolicyTests(unittest.SynchronousTestCase):
    skip = SKIP

    def upstream(self, policy_file, enforce_new_defaults):
        venv = ensure_venv(INSPECTOR_VENV, INSPECTOR_REQUIREMENTS)
        spec = {"policy_file": policy_file, "enforce_new_defaults": enforce_new_defaults,
                "personas": PERSONAS, "rules": RULES}
        result = subprocess.run([str(venv / "bin" / "python"), "-c", _SCRIPT], input=json.dumps(spec),
                                capture_output=True, text=True, timeout=120)
        self.assertEqual(result.returncode, 0, result.stderr)
        return json.loads(result.stdout.strip().splitlines()[-1])

    def ours(self, overrides, enforce_new_defaults):
        rules = authz.build_rules(overrides, enforce_new_defaults)
        return {persona + " " + rule: rules.authorize(rule, creds)
                for persona, creds in PERSONAS.items() for rule in RULES}

    def compare(self, overrides, enforce_new_defaults=True):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, "policy.yaml")
        with open(path, "w") as f:
            f.write("".join("{}: {}\n".format(json.dumps(k), json.dumps(v)) for k, v in overrides.items()))
        theirs = self.upstream(path, enforce_new_defaults)
        with open(path) as f:
            ours = self.ours(authz.parse_policy_file(f.read()), enforce_new_defaults)
        differences = sorted(k for k in theirs if theirs[k] != ours[k])
        self.assertEqual(differences, [], "inspectord vs ironic-inspector: {}".format(
            {k: (ours[k], theirs[k]) for k in differences}))
        self.assertTrue(any(theirs.values()) and not all(theirs.values()))

    def test_defaults(self):
        self.compare({})

    def test_deprecated_defaults(self):
        self.compare({}, enforce_new_defaults=False)

    def test_custom_file(self):
        self.compare(CUSTOM)

    def test_custom_file_with_deprecated_defaults(self):
        self.compare(CUSTOM, enforce_new_defaults=False)
