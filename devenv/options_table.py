"""Every ironic-inspector 12.5.0 option and what inspectord does with it.

Run from the checkout:

    python -m devenv.options_table > doc/ironic-inspector-12.5.0-options.tsv

It builds ironic-inspector 12.5.0's venv (cached), runs its
``oslo-config-generator`` with the namespaces of ironic-inspector's own
``tools/config-generator.conf`` plus the oslo.service (``[ssl]``, WSGI server)
and oslo.messaging options ironic-inspector registers at run time, and
classifies each option with inspectord's configuration loader.  The unit
test ``tests.unit.test_config.OptionTableTests`` checks the classification
against the code.
"""

import json
import subprocess
import sys
import tempfile

from devenv.venvs import ensure_venv

NAMESPACES = [
    "ironic_inspector", "keystonemiddleware.auth_token", "oslo.db", "oslo.log", "oslo.middleware.cors",
    "oslo.policy", "oslo.service.sslutils", "oslo.service.wsgi", "oslo.messaging",
    "oslo.middleware.healthcheck", "oslo.cache",
]
# Registered by ironic-inspector at import, missed by its config generator.
EXTRA_OPTIONS = {"accelerators": [{"name": "known_devices", "deprecated_opts": []}]}

# Why ignoring an option is safe, by section (or "section option").
REASONS = {
    "DEFAULT": "oslo.log/oslo.messaging/oslo.service setting: inspectord logs through twistd "
               "(--logfile, --logger, the journal), has no RPC and serves HTTP with Twisted",
    "DEFAULT host": "",
    "DEFAULT leader_election_interval": "no leader: instances share work through database leases",
    "DEFAULT max_concurrency": "no green threads; work is bounded by inspectord's own limits",
    "DEFAULT rootwrap_config": "no rootwrap: the PXE filter drivers run their commands with the daemon's capabilities",
    "DEFAULT enable_mdns": "no mDNS announcement: ramdisks need the callback URL (ipa-inspection-callback-url)",
    "DEFAULT standalone": "inspectord is always one process holding the API and the conductor's work",
    "DEFAULT executor_thread_pool_size": "oslo.messaging RPC, which inspectord does not have",
    "DEFAULT transport_url": "oslo.messaging RPC between ironic-inspector's API and conductor; inspectord is one process",
    "DEFAULT rpc_response_timeout": "oslo.messaging RPC, which inspectord does not have",
    "DEFAULT control_exchange": "oslo.messaging RPC, which inspectord does not have",
    "DEFAULT rpc_ping_enabled": "oslo.messaging RPC, which inspectord does not have",
    "DEFAULT rpc_transport": "oslo.messaging RPC, which inspectord does not have",
    "cache": "oslo.cache backends (memcached, redis) for keystonemiddleware's token cache: inspectord caches "
             "token validations in memory ([keystone_authtoken]token_cache_time)",
    "healthcheck": "oslo.middleware healthcheck tuning; see [healthcheck]enabled",
    "coordination": "instances coordinate through the database (leases, compare-and-set), not tooz",
    "cors": "inspectord sends no CORS headers, so browsers refuse cross-origin calls: as ironic-inspector without [cors]",
    "database": "oslo.db pool and retry tuning; inspectord's SQLAlchemy engine uses its own settings",
    "exception": "a development switch of ironic-inspector's exception formatting",
    "iptables ethoib_interfaces": "Ethernet-over-InfiniBand MAC mapping is not implemented: such ports get no DHCP "
                                  "answer (fails closed)",
    "keystone_authtoken": "keystonemiddleware tuning (memcache, client certificate to Keystone...): inspectord "
                          "validates tokens itself with an in-memory cache; a Keystone that needs a client "
                          "certificate refuses inspectord (fails closed)",
    "mdns": "no mDNS announcement: ramdisks need the callback URL (ipa-inspection-callback-url)",
    "oslo_messaging_kafka": "oslo.messaging, which inspectord does not have",
    "oslo_messaging_notifications": "oslo.messaging, which inspectord does not have",
    "oslo_messaging_rabbit": "oslo.messaging, which inspectord does not have",
    "oslo_policy": "remote (http:) policy checks and scope enforcement are not implemented; policy_file and "
                   "enforce_new_defaults are honoured",
    "service_catalog": "used by ironic-inspector to find its own endpoint; inspectord does not look itself up",
}

# Options inspectord parses (so their values are checked) but does not act on.
NOT_HONOURED = {
    "iptables ethoib_interfaces": "Ethernet-over-InfiniBand MAC mapping is not implemented: such ports get no DHCP "
                                  "answer (fails closed)",
}

# Values of honoured options that are refused (stop the start).
REFUSED_VALUES = {
    ("ssl", "version"): "TLSv1, TLSv1_1, SSLv2, SSLv3 refused (broken protocols); TLSv1_2, SSLv23 honoured",
    ("DEFAULT", "use_ssl"): "true without [ssl]cert_file and key_file refused; unreadable or mismatched files refused",
    ("pxe_filter", "driver"): "drivers other than iptables, nftables, dnsmasq, noop (and inspectord's builtin) refused",
    ("processing", "node_not_found_hook"): "hooks other than enroll refused",
    ("processing", "processing_hooks"): "hooks inspectord does not have refused, naming them",
}


def generate():
    venv = ensure_venv("ironic-inspector-12.5.0", ["ironic-inspector==12.5.0"])
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        command = [str(venv / "bin" / "oslo-config-generator"), "--format", "json", "--output-file", out.name]
        for namespace in NAMESPACES:
            command += ["--namespace", namespace]
        subprocess.run(command, check=True, capture_output=True)
        options = json.load(open(out.name))["options"]
    for section, extra in EXTRA_OPTIONS.items():
        options.setdefault(section, {"opts": []})["opts"].extend(extra)
    return options


def classify(section, name):
    """"honoured", "ignored" or "unknown", as inspectord's loader sees ``[section]name``."""
    from inspectord import config

    conf = config._make_conf()
    with tempfile.NamedTemporaryFile("w", suffix=".conf") as f:
        f.write("[{}]\n{} = x\n".format(section, name))
        f.flush()
        ignored, unknown = {}, {}
        config._classify(conf, f.name, ignored, unknown)
    return "ignored" if ignored else "unknown" if unknown else "honoured"


def rows(options):
    for section in sorted(options, key=lambda s: (s != "DEFAULT", s)):
        for opt in options[section]["opts"]:
            name = opt["name"].replace("-", "_")
            handling = classify(section, name)
            if handling == "honoured":
                note = REFUSED_VALUES.get((section, name), "")
                key = "{} {}".format(section, name)
                if key in NOT_HONOURED:
                    handling, note = "ignored", NOT_HONOURED[key]
            else:
                note = REASONS.get("{} {}".format(section, name), REASONS.get(section, ""))
            old = ",".join("{}{}".format("" if (d["group"] or section) == section else "[{}]".format(d["group"]), d["name"])
                           for d in opt.get("deprecated_opts", []))
            yield section, name, old, handling, note


def main():
    print("section\toption\tdeprecated_names\thandling\tnote")
    for row in rows(generate()):
        print("\t".join(row))


if __name__ == "__main__":
    sys.exit(main())
