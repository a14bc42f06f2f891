"""Per-check cost of the API policy: inspectord's evaluator vs oslo.policy.

``python -m bench.policy_check`` times ``authorize(rule, creds)`` for every
rule of ironic-inspector 12.5.0 and three personas (system admin, project
member refused, service), with the default rules:

- inspectord's :mod:`inspectord.api.authz` (``Rules.authorize``);
- oslo.policy as ironic-inspector uses it: an ``Enforcer`` with the rule
  defaults registered, no policy file (``Enforcer.authorize``, which
  checks the policy file's mtime on every call);
- oslo.policy as a pure evaluator: the check strings parsed once
  (``oslo_policy._parser.parse_rule``) and the check objects called
  directly, no file access.

oslo.policy runs in ironic-inspector 12.5.0's cached venv (the same one
the differential test tests/integration/test_auth_policy_upstream.py
uses), in a subprocess; its import cost (RSS) is measured there too.
Results: ``bench/results/policy_check.md``.
"""

import argparse
import json
import pathlib
import platform
import subprocess
import sys
import time

from devenv.venvs import ensure_venv

BENCH_DIR = pathlib.Path(__file__).resolve().parent

PERSONAS = {
    "system_admin": {"roles": ["admin", "member", "reader"], "system_scope": "all", "project_id": None},
    "member": {"roles": ["member", "reader"], "system_scope": None, "project_id": "p1"},
    "service": {"roles": ["service"], "system_scope": None, "project_id": "service"},
}
for _creds in PERSONAS.values():
    _creds.update(user_id="u1", is_admin_project=True, is_public_api=False)

_UPSTREAM = r"""
import json, sys, time
spec = json.load(sys.stdin)
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
before = rss()
from oslo_config import cfg
after_config = rss()
from oslo_policy import policy as oslo_policy, _parser
after_policy = rss()
from ironic_inspector import policy as inspector_policy
conf = cfg.ConfigOpts()
conf([], project="inspectord-bench")
# As ironic-inspector: the [oslo_policy] options, here with a policy file that does not exist (defaults only).
enforcer = oslo_policy.Enforcer(conf, policy_file="/nonexistent/policy.yaml", use_conf=True)
enforcer.suppress_default_change_warnings = True
enforcer.suppress_deprecation_warnings = True
defaults = list(inspector_policy.list_policies())
enforcer.register_defaults(defaults)
enforcer.load_rules()
rules = [d.name for d in defaults if d.name.startswith("introspection")]
allowed = sum(bool(enforcer.authorize(r, {}, c)) for c in spec["personas"].values() for r in rules)
personas = spec["personas"]
def timed(check, n):
    start = time.perf_counter()
    for _ in range(n):
        for creds in personas.values():
            for rule in rules:
                check(rule, creds)
    return (time.perf_counter() - start) / (n * len(personas) * len(rules))
n = spec["n"]
full = min(timed(lambda r, c: enforcer.authorize(r, {}, c), n) for _ in range(3))
parsed = {d.name: enforcer.rules.get(d.name) or _parser.parse_rule(d.check_str) for d in defaults}
def pure(rule, creds):
    return parsed[rule]({}, creds, enforcer)
pure_cost = min(timed(pure, n) for _ in range(3))
print(json.dumps({"allowed": allowed, "enforcer_us": full * 1e6, "pure_us": pure_cost * 1e6, "rules": len(rules),
                  "import_oslo_config_mb": after_config - before, "import_oslo_policy_mb": after_policy - after_config,
                  "modules": sorted(m for m in ("requests", "urllib3", "yaml", "oslo_serialization", "oslo_context", "stevedore") if m in sys.modules)}))
"""


def ours(n):
    def rss():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS"):
                    return int(line.split()[1]) / 1024

    from inspectord import errors, watchedfile  # noqa: F401  (what authz builds on, loaded by any inspectord)

    before = rss()
    from inspectord.api import authz

    imported = rss() - before
    rules = authz.build_rules()
    names = [d.name for d in authz.DEFAULTS if d.name.startswith("introspection")]
    allowed = sum(bool(rules.authorize(name, creds)) for creds in PERSONAS.values() for name in names)
    best = None
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(n):
            for creds in PERSONAS.values():
                for name in names:
                    rules.authorize(name, creds)
        cost = (time.perf_counter() - start) / (n * len(PERSONAS) * len(names))
        best = cost if best is None else min(best, cost)
    return {"allowed": allowed, "ours_us": best * 1e6, "import_authz_mb": imported, "rules": len(names)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=2000, help="rounds (each: every rule for every persona)")
    parser.add_argument("--out", default=str(BENCH_DIR / "results"))
    parser.add_argument("--shared", action="store_true", help="say the machine was shared with other work")
    args = parser.parse_args(argv)
    mine = ours(args.n)
    venv = ensure_venv("ironic-inspector-12.5.0", ["ironic-inspector==12.5.0"])
    result = subprocess.run([str(venv / "bin" / "python"), "-c", _UPSTREAM],
                            input=json.dumps({"n": args.n, "personas": PERSONAS}),
                            capture_output=True, text=True, timeout=600, check=True)
    theirs = json.loads(result.stdout.strip().splitlines()[-1])
    if theirs["allowed"] != mine["allowed"] or theirs["rules"] != mine["rules"]:
        raise SystemExit("the two evaluators disagree: {} vs {}".format(mine, theirs))
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        "# API policy: per-check cost",
        "",
        "``authorize(rule, creds)`` with ironic-inspector 12.5.0's default rules, {} rules x {} personas x {} "
        "rounds, best of 3; {} ({} CPUs{}).".format(
            mine["rules"], len(PERSONAS), args.n, platform.platform(), _cpus(),
            ", shared with other work" if args.shared else ""),
        "",
        "| evaluator | µs per check | import (RSS MB) |",
        "|---|---|---|",
        "| inspectord.api.authz | {:.2f} | {:.1f} |".format(mine["ours_us"], mine["import_authz_mb"]),
        "| oslo.policy Enforcer.authorize (defaults, no policy file) | {:.2f} | {:.1f} (+ oslo.config {:.1f}) |".format(
            theirs["enforcer_us"], theirs["import_oslo_policy_mb"], theirs["import_oslo_config_mb"]),
        "| oslo.policy check objects called directly | {:.2f} | same |".format(theirs["pure_us"]),
        "",
        "oslo.policy also imports: {}.".format(", ".join(theirs["modules"]) or "nothing heavy"),
        "",
    ]
    (out / "policy_check.md").write_text("\n".join(lines))
    (out / "policy_check.json").write_text(json.dumps({"ours": mine, "oslo_policy": theirs}, indent=2) + "\n")
    print("\n".join(lines))


def _cpus():
    import os

    return os.cpu_count()


if __name__ == "__main__":
    sys.exit(main())
