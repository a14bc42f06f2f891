"""Configuration: the ironic-inspector file format, frozen into plain records.

An ``ironic-inspector.conf`` works unchanged: the sections and option names
are ironic-inspector's, parsed by oslo.config (and keystoneauth1 for
``[ironic]``) on a local :class:`oslo_config.cfg.ConfigOpts`, never the global
one.  :func:`load` returns a :class:`Config` of frozen dataclasses; nothing
else in inspectord reads oslo.config.

Options of ironic-inspector that inspectord does not use (oslo.log and
oslo.messaging settings, ``[coordination]``, ``[mdns]``...) are accepted
and reported as ignored.  Anything else unknown is a start-up error naming
the option.  Options of inspectord's own live in sections of their own
(``[ironic_client]``).
"""

import configparser
import dataclasses
import os

from keystoneauth1 import loading as ks_loading
from oslo_config import cfg

from inspectord import errors

DEFAULT_DATABASE = "sqlite:////var/lib/inspectord/inspectord.sqlite"

DEFAULT_HOOKS = "ramdisk_error,root_disk_selection,scheduler,validate_interfaces,capabilities,pci_devices"

_OPTS = {
    "DEFAULT": [
        cfg.StrOpt("listen_address", default="::", help="IP address to listen on."),
        cfg.PortOpt("listen_port", default=5050, help="Port to listen on."),
        cfg.StrOpt("host", default="localhost", help="Name of this instance, used in logs."),
        cfg.StrOpt(
            "auth_strategy",
            default="keystone",
            choices=["keystone", "noauth", "http_basic"],
            help="Authentication method for the API.",
        ),
        cfg.StrOpt(
            "http_basic_auth_user_file",
            default="/etc/ironic-inspector/htpasswd",
            help="htpasswd file for auth_strategy=http_basic.",
        ),
        cfg.IntOpt(
            "timeout",
            default=3600,
            min=0,
            help="Seconds after which an introspection is failed; 0 disables timeouts.",
        ),
        cfg.IntOpt(
            "clean_up_period",
            default=60,
            min=0,
            help="Seconds between scans for timed-out introspections; 0 disables the scan.",
        ),
        cfg.IntOpt(
            "introspection_delay",
            default=5,
            min=0,
            help="Seconds between consecutive power-ons by this instance "
            "(avoids power surges when a rack is introspected at once).",
        ),
        cfg.ListOpt(
            "ipmi_address_fields",
            default=["redfish_address", "ilo_address", "drac_host", "drac_address", "ibmc_address"],
            help="driver_info fields holding the BMC address, besides *_address of the driver.",
        ),
        cfg.IntOpt("api_max_limit", default=1000, min=1, help="Largest page size of list requests."),
        cfg.BoolOpt(
            "can_manage_boot",
            default=True,
            help="Whether inspectord may set the boot device and power nodes on.",
        ),
    ],
    "ironic": [
        cfg.IntOpt("max_retries", default=30, min=0, help="Retries of a failed Ironic request."),
        cfg.FloatOpt(
            "retry_interval", default=2, min=0, help="Base seconds between retries (doubled each time, up to 30 s)."
        ),
    ],
    "ironic_client": [
        cfg.IntOpt(
            "max_in_flight",
            default=8,
            min=1,
            help="Ironic requests inspectord has in flight at once. A single "
            "Ironic resets connections beyond a few dozen writes at once.",
        ),
        cfg.FloatOpt("request_timeout", default=60, min=1, help="Seconds before an Ironic request is abandoned."),
        cfg.StrOpt(
            "api_version",
            default="1.46",
            help="Ironic API microversion sent with every request.",
        ),
    ],
    "api": [
        cfg.FloatOpt(
            "status_cache_time",
            default=1.0,
            min=0,
            help="Seconds a node's status may be served from memory. Changes made by this "
            "instance show at once; with several instances sharing a database, another "
            "instance's change shows within this time. 0 reads the database every time.",
        ),
    ],
    "database": [
        cfg.StrOpt(
            "connection",
            default=DEFAULT_DATABASE,
            secret=True,
            help="SQLAlchemy URL of the database: sqlite:///PATH, "
            "mysql+pymysql://USER:PASSWORD@HOST/NAME (install inspectord[mysql]) or "
            "postgresql://USER:PASSWORD@HOST/NAME (install inspectord[postgresql]).",
        ),
        cfg.IntOpt(
            "max_retries",
            default=10,
            min=-1,
            help="Attempts to reach the database at start before giving up; -1 retries forever. "
            "The waits between attempts grow from 0.5 s to retry_interval.",
        ),
        cfg.IntOpt(
            "retry_interval",
            default=10,
            min=1,
            help="Longest wait, in seconds, between attempts to reach the database at start.",
        ),
    ],
    "processing": [
        cfg.StrOpt(
            "add_ports",
            default="pxe",
            choices=["all", "active", "pxe", "disabled"],
            help="Which interfaces get an Ironic port.",
        ),
        cfg.StrOpt(
            "keep_ports",
            default="all",
            choices=["all", "present", "added"],
            help="Which existing ports to keep.",
        ),
        cfg.BoolOpt("overwrite_existing", default=True, help="Overwrite properties that already have a value."),
        cfg.StrOpt("default_processing_hooks", default=DEFAULT_HOOKS, help="Hooks run by default."),
        cfg.StrOpt(
            "processing_hooks",
            default="$default_processing_hooks",
            help="Hooks to run, in order; $default_processing_hooks stands for the defaults.",
        ),
        cfg.StrOpt("ramdisk_logs_dir", help="Where ramdisk logs are stored."),
        cfg.BoolOpt("always_store_ramdisk_logs", default=False, help="Store ramdisk logs even on success."),
        cfg.StrOpt(
            "node_not_found_hook",
            help="What to do with ramdisk data no node matches: unset answers 404; 'enroll' creates the "
            "node in Ironic and processes it (see [discovery] and [discovery_limits]).",
        ),
        cfg.StrOpt(
            "store_data",
            default="none",
            choices=["none", "database"],
            help="Where processed and raw introspection data is kept after processing.",
        ),
        cfg.BoolOpt("disk_partitioning_spacing", default=True, help="Leave 1 GiB of local_gb for partitioning."),
        cfg.StrOpt(
            "ramdisk_logs_filename_format",
            default="{uuid}_{dt:%Y%m%d-%H%M%S.%f}.tar.gz",
            help="File name of stored ramdisk logs.",
        ),
        cfg.BoolOpt("power_off", default=True, help="Power nodes off after introspection."),
        cfg.BoolOpt(
            "permit_active_introspection", default=False, help="Allow introspection of nodes in the active state."
        ),
        cfg.BoolOpt("update_pxe_enabled", default=True, help="Update pxe_enabled of existing ports."),
        cfg.BoolOpt(
            "enable_setting_ipmi_credentials",
            default=False,
            help="Allow new_ipmi_username/new_ipmi_password when starting introspection.",
        ),
    ],
    "pxe_filter": [
        cfg.StrOpt(
            "driver",
            default="iptables",
            help="PXE filter driver: nftables (recommended), iptables, dnsmasq, builtin (inspectord's own "
            "DHCP server, see [builtin_dhcp]) or noop (no filtering).",
        ),
        cfg.IntOpt(
            "sync_period",
            default=15,
            min=0,
            help="Seconds between full filter syncs, which re-read every Ironic port; 0 syncs only on "
            "introspection events (and once at start).",
        ),
        cfg.BoolOpt(
            "deny_unknown_macs",
            default=False,
            help="Deny DHCP to MACs no Ironic port has even while a node is under introspection "
            "(unknown MACs are always denied when nothing is under introspection and no "
            "node_not_found_hook is set).",
        ),
    ],
    "discovery": [
        cfg.StrOpt(
            "enroll_node_driver",
            default="fake-hardware",
            help="Ironic driver (hardware type) of nodes created by node_not_found_hook=enroll.",
        ),
        cfg.DictOpt(
            "enroll_node_fields",
            default={},
            help="Additional fields of newly discovered nodes, e.g. resource_class:baremetal.",
        ),
        cfg.ListOpt(
            "enabled_bmc_address_version",
            default=["4", "6"],
            help="BMC address put in driver_info/ipmi_address of discovered nodes: 4,6 prefers IPv4, "
            "6,4 prefers IPv6, 4 or 6 uses only that version.",
        ),
    ],
    # inspectord's own: node_not_found_hook=enroll is a denial-of-service path.
    "discovery_limits": [
        cfg.IntOpt(
            "period",
            default=60,
            min=1,
            help="Seconds over which discovery attempts (node_not_found_hook=enroll) are counted.",
        ),
        cfg.IntOpt(
            "per_source",
            default=10,
            min=0,
            help="Discovery attempts allowed from one source IP address per period; 0 means no limit.",
        ),
        cfg.IntOpt(
            "total",
            default=100,
            min=0,
            help="Discovery attempts allowed in all per period (across every inspectord sharing the "
            "database); 0 means no limit.",
        ),
    ],
    "iptables": [
        cfg.StrOpt(
            "dnsmasq_interface",
            default="br-ctlplane",
            help="Interface the DHCP server listens on; the iptables and nftables drivers filter "
            "DHCP requests arriving there.",
        ),
        cfg.StrOpt(
            "firewall_chain", default="ironic-inspector", help="iptables chain the iptables driver owns."
        ),
        cfg.ListOpt(
            "ethoib_interfaces",
            default=[],
            help="Accepted for compatibility; Ethernet-over-InfiniBand MAC mapping is not implemented.",
        ),
        cfg.StrOpt(
            "ip_version",
            default="4",
            choices=["4", "6"],
            help="Filter DHCPv4 (UDP 67, iptables) or DHCPv6 (UDP 547, ip6tables); also used by nftables.",
        ),
    ],
    "dnsmasq_pxe_filter": [
        cfg.StrOpt(
            "dhcp_hostsdir",
            default="/var/lib/ironic-inspector/dhcp-hostsdir",
            help="Directory given to dnsmasq as --dhcp-hostsdir; the dnsmasq driver writes one file per MAC.",
        ),
        cfg.BoolOpt(
            "purge_dhcp_hostsdir",
            default=True,
            help="Remove every file of dhcp_hostsdir when inspectord starts (otherwise they are read back).",
        ),
        cfg.StrOpt(
            "dnsmasq_start_command",
            default="",
            help="Shell command starting dnsmasq, run once the hosts directory is first written.",
        ),
        cfg.StrOpt(
            "dnsmasq_stop_command", default="", help="Shell command stopping dnsmasq, run when inspectord stops."
        ),
    ],
    "nftables": [
        cfg.StrOpt(
            "table",
            default="inspectord",
            help="nftables table (family inet) the nftables driver owns; it filters DHCP requests "
            "arriving on [iptables]dnsmasq_interface.",
        ),
    ],
    "builtin_dhcp": [
        cfg.StrOpt(
            "interface",
            default="",
            help="Interface the builtin DHCP server answers on (port 67); empty means [iptables]dnsmasq_interface.",
        ),
        cfg.StrOpt(
            "mode",
            default="dhcp",
            choices=["dhcp", "proxy"],
            help="dhcp: lease addresses from range_start..range_end; proxy: ProxyDHCP beside an existing "
            "DHCP server (boot information only, to PXE clients).",
        ),
        cfg.StrOpt("server_address", help="This host's IPv4 address on the interface (server identifier)."),
        cfg.StrOpt("range_start", help="First address leased (mode=dhcp)."),
        cfg.StrOpt("range_end", help="Last address leased (mode=dhcp)."),
        cfg.StrOpt("netmask", default="255.255.255.0", help="Subnet mask given to clients (mode=dhcp)."),
        cfg.StrOpt("router", help="Default gateway given to clients (mode=dhcp); none if unset."),
        cfg.ListOpt("dns_servers", default=[], help="DNS servers given to clients (mode=dhcp)."),
        cfg.IntOpt("lease_time", default=600, min=60, help="Seconds a lease lasts (mode=dhcp)."),
        cfg.StrOpt("next_server", help="TFTP server (siaddr) clients boot from; defaults to server_address."),
        cfg.StrOpt("bios_boot_file", default="undionly.kpxe", help="Boot file for BIOS PXE clients."),
        cfg.StrOpt("uefi_boot_file", default="snponly.efi", help="Boot file for UEFI x86-64 clients (option 93 = 7 or 9)."),
        cfg.StrOpt("arm64_boot_file", default="snponly-arm64.efi", help="Boot file for UEFI ARM64 clients (option 93 = 11)."),
        cfg.StrOpt(
            "ipxe_boot_file",
            default="inspector.ipxe",
            help="What iPXE (user class iPXE) is told to load, e.g. http://192.0.2.1:8080/inspector.ipxe.",
        ),
    ],
    "dhcp_sniffer": [
        cfg.BoolOpt(
            "enabled",
            default=False,
            help="Record the DHCP requests seen on the interface (before the PXE filter drops them), so a "
            "node's status tells 'never booted' from 'blocked' from 'ramdisk never called back'. "
            "Needs CAP_NET_RAW. The builtin DHCP driver records requests without it.",
        ),
        cfg.StrOpt("interface", default="", help="Interface to sniff; empty means [iptables]dnsmasq_interface."),
    ],
    "capabilities": [
        cfg.BoolOpt("boot_mode", default=False, help="Set the boot_mode capability."),
        cfg.DictOpt(
            "cpu_flags",
            default={
                "vmx": "cpu_vt",
                "svm": "cpu_vt",
                "aes": "cpu_aes",
                "pse": "cpu_hugepages",
                "pdpe1gb": "cpu_hugepages_1g",
                "smx": "cpu_txt",
            },
            help="CPU flag -> capability set to true.",
        ),
    ],
    "pci_devices": [
        cfg.MultiStrOpt(
            "alias",
            default=[],
            help='JSON {"vendor_id": ..., "product_id": ..., "name": ...}; counts become capabilities.',
        ),
    ],
    "port_physnet": [
        cfg.ListOpt(
            "cidr_map",
            default=[],
            help="CIDR:physical network pairs, e.g. 10.10.10.0/24:physnet_a,2001:db8::/64:physnet_b; the "
            "physnet_cidr_map hook sets physical_network of ports whose interface has an address in one.",
        ),
    ],
    "extra_hardware": [
        cfg.BoolOpt(
            "strict",
            default=False,
            help="extra_hardware hook: refuse data with an item that is not 4 elements long, and drop "
            "the incoming 'data' even when it cannot be parsed.",
        ),
    ],
    "accelerators": [
        cfg.StrOpt(
            "known_devices",
            default="",
            help="YAML file of known accelerator PCI devices for the accelerators hook "
            "({pci_devices: [{vendor_id, device_id, type, device_info}]}); empty means the list "
            "shipped with inspectord.",
        ),
    ],
    "healthcheck": [cfg.BoolOpt("enabled", default=False)],
    "ipmi_verification": [
        cfg.FloatOpt(
            "window",
            default=120,
            min=0,
            help="Seconds inspectord keeps trying to log in to the BMC with new credentials "
            "(the ramdisk sets them after its callback is answered).",
        ),
        cfg.FloatOpt("attempt_timeout", default=10, min=1, help="Seconds one IPMI login attempt may take."),
        cfg.IntOpt("threads", default=4, min=1, help="Threads for IPMI sessions (pyghmi blocks)."),
    ],
    # keystonemiddleware's auth_token options that inspectord uses to validate
    # tokens itself (see inspectord.api.auth); the others are ignored.
    "keystone_authtoken": [
        cfg.StrOpt(
            "www_authenticate_uri",
            deprecated_name="auth_uri",
            help="Keystone endpoint announced to clients in WWW-Authenticate; defaults to auth_url.",
        ),
        cfg.StrOpt(
            "auth_type",
            default="password",
            choices=["password", "v3password", "v3applicationcredential"],
            help="How inspectord authenticates its service user.",
        ),
        cfg.StrOpt("auth_url", help="Keystone identity endpoint, e.g. http://keystone:5000/v3."),
        cfg.StrOpt("username", help="Service user name."),
        cfg.StrOpt("user_id", help="Service user ID (instead of username)."),
        cfg.StrOpt("password", secret=True, help="Service user password."),
        cfg.StrOpt("user_domain_name", help="Domain of the service user (by name)."),
        cfg.StrOpt("user_domain_id", help="Domain of the service user (by ID)."),
        cfg.StrOpt("project_name", help="Project the service token is scoped to."),
        cfg.StrOpt("project_id", help="Project the service token is scoped to (by ID)."),
        cfg.StrOpt("project_domain_name", help="Domain of project_name (by name)."),
        cfg.StrOpt("project_domain_id", help="Domain of project_name (by ID)."),
        cfg.StrOpt("system_scope", help="Scope the service token to the system (all) instead of a project."),
        cfg.StrOpt("application_credential_id", help="For auth_type=v3applicationcredential."),
        cfg.StrOpt("application_credential_name", help="For auth_type=v3applicationcredential (with username)."),
        cfg.StrOpt("application_credential_secret", secret=True, help="For auth_type=v3applicationcredential."),
        cfg.IntOpt(
            "token_cache_time",
            default=300,
            min=-1,
            help="Seconds a token validation is cached (never past the token's expiry); -1 disables the cache.",
        ),
        cfg.IntOpt(
            "http_connect_timeout",
            min=1,
            help="Seconds before a request to Keystone is abandoned (the API answers 503); default 10.",
        ),
        cfg.StrOpt("cafile", help="PEM CA bundle to verify Keystone's HTTPS certificate."),
        cfg.BoolOpt("insecure", default=False, help="Do not verify Keystone's HTTPS certificate."),
    ],
    "oslo_policy": [
        cfg.StrOpt(
            "policy_file",
            default="policy.yaml",
            help="YAML file overriding API policy rules; a relative path is looked up next to the "
            "configuration file (a missing default file means the built-in defaults).",
        ),
        cfg.BoolOpt(
            "enforce_new_defaults",
            default=True,
            help="False also allows what the rules' pre-Wallaby defaults allowed (rule:is_admin...).",
        ),
    ],
    "http_basic": [
        cfg.ListOpt(
            "default_roles",
            default=["admin"],
            help="Policy roles of http_basic users not listed in user_roles (admin: every valid user "
            "may do everything, as in ironic-inspector).",
        ),
        cfg.DictOpt(
            "user_roles",
            default={},
            help="user:roles pairs giving http_basic users policy roles, e.g. alice:admin,bob:reader "
            "(several roles separated by ;, e.g. carol:reader;member).",
        ),
    ],
}

# Options ironic-inspector knew that inspectord accepts but does not use.
IGNORED_DEFAULT_OPTIONS = frozenset(
    """debug verbose log_file log_dir log_config_append log_date_format use_stderr
    use_syslog use_journal use_json syslog_log_facility logging_context_format_string
    logging_default_format_string logging_debug_format_suffix logging_exception_prefix
    logging_user_identity_format default_log_levels publish_errors instance_format
    instance_uuid_format rate_limit_interval rate_limit_burst rate_limit_except_level
    fatal_deprecations watch_log_file log_rotation_type log_rotate_interval
    log_rotate_interval_type max_logfile_count max_logfile_size_mb
    transport_url rpc_transport rpc_response_timeout control_exchange executor_thread_pool_size
    listen_unix_socket listen_unix_socket_mode leader_election_interval use_ssl
    max_concurrency rootwrap_config enable_mdns standalone""".split()
)
IGNORED_SECTIONS = frozenset(
    """coordination mdns swift service_catalog exception oslo_concurrency
    oslo_middleware cors json_rpc ssl
    oslo_messaging_rabbit oslo_messaging_notifications oslo_messaging_kafka
    oslo_messaging_amqp oslo_reports profiler""".split()
)
# keystonemiddleware and keystoneauth options inspectord accepts but does not use.
IGNORED_KEYSTONE_AUTHTOKEN_OPTIONS = frozenset(
    """auth_section auth_version cache certfile keyfile delay_auth_decision enforce_token_bind
    http_request_max_retries include_service_catalog interface region_name service_type
    service_token_roles service_token_roles_required memcached_servers memcache_security_strategy
    memcache_secret_key memcache_pool_dead_retry memcache_pool_maxsize memcache_pool_socket_timeout
    memcache_pool_unused_timeout memcache_pool_conn_get_timeout memcache_use_advanced_pool
    memcache_tls_enabled memcache_tls_cafile memcache_tls_certfile memcache_tls_keyfile
    memcache_tls_allowed_ciphers memcache_sasl_enabled memcache_username memcache_password
    default_domain_id default_domain_name domain_id domain_name trust_id
    timeout collect_timing split_loggers tls_ciphers tls_min_version
    auth_plugin identity_uri admin_user admin_password admin_tenant_name admin_token auth_host
    auth_port auth_protocol auth_admin_prefix signing_dir hash_algorithms revocation_cache_time
    check_revocations_for_cached""".split()
)  # the last two lines: options of older keystonemiddleware releases, still in old files
# oslo.db options an ironic-inspector.conf may carry in [database].
IGNORED_DATABASE_OPTIONS = frozenset(
    """backend sqlite_synchronous slave_connection mysql_sql_mode mysql_wsrep_sync_wait
    mysql_enable_ndb connection_recycle_time max_pool_size
    max_overflow connection_debug connection_trace pool_timeout use_db_reconnect
    db_retry_interval db_inc_retry_interval db_max_retry_interval db_max_retries
    connection_parameters idle_timeout min_pool_size sqlite_db use_tpool""".split()
)
IGNORED_OPTIONS = {
    "DEFAULT": IGNORED_DEFAULT_OPTIONS,
    "database": IGNORED_DATABASE_OPTIONS,
    "keystone_authtoken": IGNORED_KEYSTONE_AUTHTOKEN_OPTIONS,
    "oslo_policy": frozenset(
        """enforce_scope policy_default_rule policy_dirs remote_content_type remote_ssl_ca_crt_file
        remote_ssl_client_crt_file remote_ssl_client_key_file remote_ssl_verify_server_crt
        remote_timeout""".split()
    ),
}
# keystoneauth plugins whose options may appear in [ironic] whatever auth_type says.
_KNOWN_AUTH_PLUGINS = ("password", "v3applicationcredential", "token", "none", "http_basic")


def _group_attr(group):
    return "default" if group == "DEFAULT" else group


def _make_conf():
    conf = cfg.ConfigOpts()
    for group, opts in _OPTS.items():
        conf.register_opts(opts, group=None if group == "DEFAULT" else group)
    ks_loading.register_auth_conf_options(conf, "ironic")
    ks_loading.register_session_conf_options(conf, "ironic")
    ks_loading.register_adapter_conf_options(conf, "ironic")
    return conf


def _known_ironic_options(conf):
    names = set(conf.ironic)
    for plugin in _KNOWN_AUTH_PLUGINS:
        try:
            loader = ks_loading.get_plugin_loader(plugin)
        except Exception:  # plugin not installed with this keystoneauth
            continue
        names.update(o.dest for o in loader.get_options())
    return names


def _check_unknown(conf, path):
    """Raise ConfigError for unknown options; return the ignored ones."""
    parser = configparser.ConfigParser(interpolation=None, strict=False, default_section="\0none")
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except configparser.Error as e:
        raise errors.ConfigError("cannot parse {}: {}".format(path, e)) from None
    ignored, unknown = [], []
    for section in parser.sections():
        keys = list(parser[section])
        if section in IGNORED_SECTIONS or section.startswith("oslo_messaging_"):
            ignored.extend("[{}]{}".format(section, k) for k in keys)
            continue
        if section == "ironic":
            known = _known_ironic_options(conf)
        elif section in _OPTS:
            known = {o.dest for o in _OPTS[section]}
            known |= {d.name for o in _OPTS[section] for d in o.deprecated_opts if d.name}  # e.g. auth_uri
        else:
            unknown.extend("[{}]{}".format(section, k) for k in keys)
            if not keys:
                unknown.append("[{}]".format(section))
            continue
        for key in keys:
            dest = key.replace("-", "_")
            if dest in known:
                continue
            if dest in IGNORED_OPTIONS.get(section, ()):
                ignored.append("[{}]{}".format(section, key))
            else:
                unknown.append("[{}]{}".format(section, key))
    if unknown:
        raise errors.ConfigError("unknown option(s) in {}: {}".format(path, ", ".join(unknown)))
    return ignored


def _freeze(conf, group, opts):
    values = conf if group == "DEFAULT" else conf[group]
    fields, data = [], {}
    for opt in opts:
        value = values[opt.dest]
        if isinstance(value, list):
            value = tuple(value)
        elif isinstance(value, dict):
            value = dict(value)
        fields.append((opt.dest, object))
        data[opt.dest] = value
    cls = dataclasses.make_dataclass(
        "{}Options".format(group.title().replace("_", "")), fields, frozen=True
    )
    return cls(**data)


@dataclasses.dataclass(frozen=True)
class IronicAuthOptions:
    """What the Ironic client needs to authenticate: a plugin or none."""

    auth_type: str
    endpoint_override: str
    service_type: str
    interface: object
    region_name: str
    # Loaded keystoneauth plugin and session; None for auth_type=none.
    auth: object = dataclasses.field(repr=False, compare=False, default=None)
    session: object = dataclasses.field(repr=False, compare=False, default=None)


@dataclasses.dataclass(frozen=True)
class Config:
    default: object
    ironic: object
    ironic_client: object
    ironic_auth: IronicAuthOptions
    database: object
    processing: object
    pxe_filter: object
    discovery: object
    iptables: object
    dnsmasq_pxe_filter: object
    capabilities: object
    pci_devices: object
    port_physnet: object
    healthcheck: object
    path: str = None
    ignored_options: tuple = ()
    keystone_authtoken: object = None
    oslo_policy: object = None
    http_basic: object = None
    nftables: object = None
    builtin_dhcp: object = None
    dhcp_sniffer: object = None
    discovery_limits: object = None
    extra_hardware: object = None
    accelerators: object = None
    ipmi_verification: object = None
    api: object = None

    @property
    def processing_hooks(self):
        return tuple(h.strip() for h in self.processing.processing_hooks.split(",") if h.strip())


def load(path=None, overrides=None):
    """Read ``path`` (or only defaults) and return a frozen :class:`Config`.

    :param overrides: ``{(group, option): value}`` applied after the file,
        for tests and command-line flags.
    :raises errors.ConfigError: naming the unknown or invalid option.
    """
    conf = _make_conf()
    ignored = []
    if path is not None:
        if not os.path.exists(path):
            raise errors.ConfigError("configuration file {} does not exist".format(path))
        ignored = _check_unknown(conf, path)
    try:
        conf(
            args=[],
            project="inspectord",
            default_config_files=[path] if path else [],
            default_config_dirs=[],
            validate_default_values=True,
            use_env=False,
        )
        for (group, name), value in (overrides or {}).items():
            conf.set_override(name, value, group=None if group == "DEFAULT" else group)
        frozen = {_group_attr(g): _freeze(conf, g, opts) for g, opts in _OPTS.items()}
    except (cfg.Error, ValueError) as e:
        raise errors.ConfigError("invalid configuration: {}".format(e)) from None
    ironic_auth = _load_ironic_auth(conf)
    result = Config(ironic_auth=ironic_auth, path=path, ignored_options=tuple(ignored), **frozen)
    validate(result)
    return result


def _load_ironic_auth(conf):
    group = conf.ironic
    auth_type = group.auth_type or "none"
    try:
        if auth_type == "none":
            auth = session = None
        else:
            auth = ks_loading.load_auth_from_conf_options(conf, "ironic")
            session = ks_loading.load_session_from_conf_options(conf, "ironic", auth=auth)
    except Exception as e:  # keystoneauth raises many types; all mean bad config
        raise errors.ConfigError("invalid [ironic] authentication options: {}".format(e)) from None
    if auth_type == "none" and not group.endpoint_override:
        raise errors.ConfigError("[ironic]endpoint_override is required with [ironic]auth_type=none")
    return IronicAuthOptions(
        auth_type=auth_type,
        endpoint_override=group.endpoint_override,
        service_type=group.service_type or "baremetal",
        interface=tuple(group.valid_interfaces or ["internal", "public"]),
        region_name=group.region_name,
        auth=auth,
        session=session,
    )


SUPPORTED_PXE_FILTERS = ("noop", "iptables", "nftables", "dnsmasq", "builtin")


def _validate_keystone_authtoken(ks):
    """What auth_strategy=keystone needs to get a service token; the message names the option."""
    def missing(option, why):
        return errors.ConfigError(
            "[DEFAULT]auth_strategy=keystone needs [keystone_authtoken]{} ({})".format(option, why)
        )

    if not ks.auth_url:
        raise missing("auth_url", "the Keystone endpoint tokens are validated with")
    if ks.auth_type == "v3applicationcredential":
        if not ks.application_credential_secret:
            raise missing("application_credential_secret", "auth_type=v3applicationcredential")
        if not ks.application_credential_id and not (ks.application_credential_name and (ks.user_id or ks.username)):
            raise missing("application_credential_id", "or application_credential_name with username")
        return
    if not (ks.username or ks.user_id):
        raise missing("username", "the service user inspectord validates tokens as")
    if not ks.password:
        raise missing("password", "the service user's password")
    if ks.username and not ks.user_id and not (ks.user_domain_name or ks.user_domain_id):
        raise missing("user_domain_name", "the domain of username")
    if ks.project_name and not ks.project_id and not (ks.project_domain_name or ks.project_domain_id):
        raise missing("project_domain_name", "the domain of project_name")


def validate(config):
    """Cross-option checks; raise ConfigError naming the option."""
    from inspectord.processing import discovery, hooks  # the hook registry, node_not_found_hook

    if config.default.auth_strategy == "keystone":
        _validate_keystone_authtoken(config.keystone_authtoken)
    if config.processing.enable_setting_ipmi_credentials:
        from inspectord.ipmi import pyghmi_available

        if not pyghmi_available():
            raise errors.ConfigError(
                "[processing]enable_setting_ipmi_credentials needs pyghmi (pip install pyghmi)"
            )
    if config.pxe_filter.driver not in SUPPORTED_PXE_FILTERS:
        raise errors.ConfigError(
            "[pxe_filter]driver={} is not a PXE filter driver of inspectord "
            "(available: {})".format(config.pxe_filter.driver, ", ".join(SUPPORTED_PXE_FILTERS))
        )
    discovery.check(config)
    if config.processing.add_ports == "disabled" and config.processing.keep_ports == "added":
        raise errors.ConfigError(
            "[processing]add_ports=disabled cannot be combined with keep_ports=added; set keep_ports=all"
        )
    hooks.check(config)


_IRONIC_AUTH_SAMPLE = """\
# Authentication to Ironic (keystoneauth1 options, as ironic-inspector).
# Standalone Ironic without Keystone:
#auth_type = none
#endpoint_override = http://127.0.0.1:6385
# Keystone password authentication (the endpoint comes from the catalog
# unless endpoint_override is set):
#auth_type = password
#auth_url = http://keystone.example.com:5000
#username = ironic-inspector
#password = SECRET
#project_name = service
#user_domain_name = Default
#project_domain_name = Default
#region_name = RegionOne
#valid_interfaces = internal,public
"""


def sample():
    """The sample configuration file, generated from the option definitions."""
    lines = [
        "# inspectord configuration.  Every option of ironic-inspector's that inspectord",
        "# implements has the same section and name, so an existing",
        "# ironic-inspector.conf can be used as it is.  Generated by",
        "# `python -m inspectord.config`; values shown are the defaults.",
    ]
    for group, opts in _OPTS.items():
        lines += ["", "[{}]".format(group)]
        if group == "ironic":
            lines += _IRONIC_AUTH_SAMPLE.rstrip("\n").split("\n")
        for opt in opts:
            if opt.help:
                lines.append("# " + opt.help)
            default = opt.default
            if isinstance(default, bool):
                default = str(default).lower()
            elif isinstance(default, (list, tuple)):
                default = ",".join(default)
            elif isinstance(default, dict):
                default = ",".join("{}:{}".format(k, v) for k, v in default.items())
            elif default is None:
                default = "<None>"
            lines.append("#{} = {}".format(opt.dest, default))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(sample(), end="")
