"""Configuration: the ironic-inspector file format, frozen into plain records.

An ``ironic-inspector.conf`` works unchanged: the sections and option names
are ironic-inspector's, parsed by oslo.config (keystoneauth1's options for ``[ironic]`` and
``[swift]`` are declared and loaded by :mod:`inspectord.keystone_options`) on a local :class:`oslo_config.cfg.ConfigOpts`, never the global
one.  :func:`load` returns a :class:`Config` of frozen dataclasses; nothing
else in inspectord reads oslo.config.

Several files and directories (``--config-file``, ``--config-dir``) are
merged in the order given, later ones winning option by option, exactly as
oslo.config merges them.  Options of ironic-inspector that inspectord does
not use (oslo.log and oslo.messaging settings, ``[coordination]``,
``[mdns]``...) are accepted and reported as ignored; options nobody knows
(misspelt, or dropped by ironic-inspector long ago but still written by
deployment tools) are reported as unknown.  Neither stops the start: as
with oslo.config, only an invalid value of an option inspectord uses does.
The listening options (``use_ssl`` with ``[ssl]``, ``listen_unix_socket``)
are honoured or refused, never dropped.  Options of inspectord's own live in
sections of their own (``[ironic_client]``).

This module is a leaf: it imports nothing of inspectord but
:mod:`inspectord.errors`.  Each section is a frozen dataclass whose field
types follow the option types (:data:`SECTIONS`); :func:`load` checks
options against each other only.  What a component alone can judge (its
driver names, hooks, TLS files) it checks itself, from the sections it
reads, when the service is wired (:func:`inspectord.service.check`).
"""

import dataclasses
import glob
import os
import typing

from oslo_config import cfg
from oslo_config import types as cfg_types

from inspectord import errors, keystone_options
from inspectord.keystone_options import IronicAuthOptions  # noqa: F401 (the type of Config.ironic_auth)

DEFAULT_DATABASE = "sqlite:////var/lib/inspectord/inspectord.sqlite"



class _Octal(cfg_types.Integer):
    """An integer written in octal, as ironic-inspector's listen_unix_socket_mode."""

    def __init__(self):
        super().__init__(min=0, max=0o7777, type_name="octal integer")

    def __call__(self, value):
        if isinstance(value, int):
            return super().__call__(value)
        try:
            return super().__call__(int(str(value).strip(), 8))
        except ValueError:
            raise ValueError("{!r} is not an octal file mode".format(value)) from None


DEFAULT_HOOKS = "ramdisk_error,root_disk_selection,scheduler,validate_interfaces,capabilities,pci_devices"

_OPTS = {
    "DEFAULT": [
        cfg.StrOpt("listen_address", default="::", help="IP address to listen on."),
        cfg.PortOpt("listen_port", default=5050, help="Port to listen on."),
        cfg.StrOpt(
            "listen_unix_socket",
            help="Unix socket to listen on instead of listen_address and listen_port (nothing "
            "listens on TCP then); a stale socket left at that path is replaced.",
        ),
        cfg.Opt(
            "listen_unix_socket_mode",
            type=_Octal(),
            help="File mode (octal, e.g. 0660) of listen_unix_socket; unset leaves what the umask gives.",
        ),
        cfg.BoolOpt(
            "use_ssl",
            default=False,
            help="Serve HTTPS with [ssl]cert_file and key_file (and client certificates signed by "
            "[ssl]ca_file when it is set).",
        ),
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
    # Leases of the transient states: the instance that moves a node into
    # one of them owns it and renews its lease while it works; when the lease
    # ends (the owner died or stopped), any instance resumes or fails the node.
    "lifecycle": [
        cfg.FloatOpt(
            "starting_lease",
            default=15,
            min=1,
            help="Seconds a node in 'starting' (boot device, power on) stays owned by an instance "
            "that stopped renewing it; then another instance starts it again.",
        ),
        cfg.FloatOpt("aborting_lease", default=15, min=1, help="The same for 'aborting' (power off, then error)."),
        cfg.FloatOpt(
            "reapplying_lease",
            default=15,
            min=1,
            help="The same for 'reapplying' (processing the stored data again).",
        ),
        cfg.FloatOpt(
            "enrolling_lease",
            default=15,
            min=1,
            help="The same for 'enrolling' (discovery: creating the node in Ironic); past it the "
            "enrollment is completed from the stored data or undone, so the machine can be discovered again.",
        ),
        cfg.FloatOpt(
            "processing_lease",
            default=30,
            min=1,
            help="The same for 'processing'; the stored ramdisk data is processed again. Leases are renewed "
            "every third of the shortest lease while work is in flight, so this only bounds how long a "
            "node waits after its owner died.",
        ),
        cfg.FloatOpt(
            "lease_check_period",
            default=3,
            min=0.1,
            help="Seconds between scans for nodes whose lease ended.",
        ),
        cfg.FloatOpt(
            "stop_grace",
            default=20,
            min=0,
            help="Seconds a graceful stop (SIGTERM) lets ramdisk callbacks and Ironic calls in flight "
            "finish; what remains is interrupted and its leases released, so another instance (or this "
            "one, restarted) resumes it at once. Work waiting to retry an unreachable Ironic or BMC is "
            "interrupted at once, not after this grace.",
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
            choices=["none", "database", "swift"],
            help="Where processed and raw introspection data is kept after processing: the database, "
            "or Swift (objects inspector_data-<uuid> and inspector_data-<uuid>-UNPROCESSED, see [swift]).",
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
    # With store_data=swift; Swift's endpoint and authentication are
    # keystoneauth options of this section, as in [ironic].
    "swift": [
        cfg.StrOpt("container", default="ironic-inspector", help="Swift container of introspection data."),
        cfg.IntOpt(
            "delete_after",
            default=0,
            min=0,
            help="Seconds after which Swift deletes the objects stored (X-Delete-After); 0 keeps them.",
        ),
        cfg.IntOpt(
            "max_retries",
            default=2,
            min=0,
            help="Retries of a Swift request that failed with a 5xx answer or a connection error.",
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
    "oslo_middleware": [
        cfg.BoolOpt(
            "enable_proxy_headers_parsing",
            default=True,
            help="The links inspectord builds take their scheme, host, port and path prefix from a "
            "reverse proxy's headers (Forwarded, RFC 7239, or the last X-Forwarded-Proto/-Host/-Port/"
            "-Prefix), as ironic-inspector always did.  Set false when clients reach inspectord "
            "directly and you do not want them to choose those links.",
        ),
    ],
    "healthcheck": [
        cfg.BoolOpt(
            "enabled",
            default=False,
            help="Serve GET /healthcheck (unauthenticated, as ironic-inspector): 200 OK, or 503 when a "
            "backend says the service is disabled.  ?detail=1, or an authenticated request asking for "
            "JSON, gets the state of every dependency.",
        ),
        cfg.ListOpt(
            "backends",
            default=[],
            help="oslo.middleware health check backends: disable_by_file, disable_by_files_ports, "
            "enable_by_files.  disable_by_file_path also applies when this is empty.",
        ),
        cfg.StrOpt(
            "disable_by_file_path",
            help="/healthcheck answers 503 DISABLED BY FILE while this file exists (take the instance "
            "out of a load balancer before maintenance).",
        ),
        cfg.ListOpt(
            "disable_by_file_paths",
            default=[],
            help="port:path pairs: 503 while the file of the listener's port exists (backend disable_by_files_ports).",
        ),
        cfg.ListOpt(
            "enable_by_file_paths",
            default=[],
            help="503 FILE PATH MISSING until every one of these files exists (backend enable_by_files).",
        ),
        cfg.ListOpt(
            "allowed_source_ranges",
            default=[],
            help="CIDRs allowed to get /healthcheck; others get 404. Empty: everyone.",
        ),
        cfg.BoolOpt(
            "ignore_proxied_requests",
            default=False,
            help="Requests with X-Forwarded-* headers get 404 from /healthcheck.",
        ),
        cfg.BoolOpt(
            "detailed",
            default=False,
            help="Accepted for ironic-inspector files; the detailed view is ?detail=1 (authenticated).",
        ),
    ],
    "metrics": [
        cfg.BoolOpt("enabled", default=True, help="Serve Prometheus metrics at GET /metrics."),
        cfg.PortOpt(
            "listen_port",
            help="Serve /metrics on a listener of its own on this port instead of the API's.",
        ),
        cfg.StrOpt(
            "listen_address",
            default="127.0.0.1",
            help="Address of the separate metrics listener (with listen_port).",
        ),
        cfg.BoolOpt(
            "require_auth",
            default=False,
            help="Authenticate /metrics like the API (policy rule introspection:status); public by default.",
        ),
    ],
    # oslo.service's TLS options, read by ironic-inspector when use_ssl is true.
    "ssl": [
        cfg.StrOpt("cert_file", help="PEM certificate (and chain) served with use_ssl = true."),
        cfg.StrOpt("key_file", help="PEM private key of cert_file."),
        cfg.StrOpt(
            "ca_file",
            help="PEM CA certificates; when set, every client must present a certificate they signed.",
        ),
        cfg.StrOpt(
            "version",
            help="TLS versions allowed: unset, SSLv23 or TLS: any version this OpenSSL accepts "
            "(1.2 and 1.3); TLSv1_2: only TLS 1.2. TLSv1, TLSv1_1, SSLv2 and SSLv3 are refused.",
        ),
        cfg.StrOpt("ciphers", help="OpenSSL cipher list for TLS 1.2 and older, e.g. ECDHE+AESGCM."),
    ],
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
    logfile logdir log_config log_color rpc_thread_pool_size rpc_ping_enabled
    api_paste_config wsgi_log_format tcp_keepidle wsgi_default_pool_size max_header_line
    wsgi_keep_alive client_socket_timeout wsgi_server_debug
    use_syslog use_journal use_json syslog_log_facility logging_context_format_string
    logging_default_format_string logging_debug_format_suffix logging_exception_prefix
    logging_user_identity_format default_log_levels publish_errors instance_format
    instance_uuid_format rate_limit_interval rate_limit_burst rate_limit_except_level
    fatal_deprecations watch_log_file log_rotation_type log_rotate_interval
    log_rotate_interval_type max_logfile_count max_logfile_size_mb
    transport_url rpc_transport rpc_response_timeout control_exchange executor_thread_pool_size
    leader_election_interval
    max_concurrency rootwrap_config enable_mdns standalone""".split()
)
IGNORED_SECTIONS = frozenset(
    """cache coordination mdns service_catalog exception ironic_lib oslo_concurrency
    cors json_rpc
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
    memcache_servers auth_plugin identity_uri admin_user admin_password admin_tenant_name admin_token auth_host
    auth_port auth_protocol auth_admin_prefix signing_dir hash_algorithms revocation_cache_time
    check_revocations_for_cached""".split()
)  # the last two lines: options of older keystonemiddleware releases, still in old files
# oslo.db options an ironic-inspector.conf may carry in [database].
IGNORED_DATABASE_OPTIONS = frozenset(
    """backend sqlite_synchronous slave_connection mysql_sql_mode mysql_wsrep_sync_wait
    mysql_enable_ndb connection_recycle_time max_pool_size
    max_overflow connection_debug connection_trace pool_timeout use_db_reconnect
    db_retry_interval db_inc_retry_interval db_max_retry_interval db_max_retries
    connection_parameters idle_timeout min_pool_size sqlite_db use_tpool
    asyncio_connection asyncio_slave_connection synchronous_reader""".split()
)
IGNORED_OPTIONS = {
    "DEFAULT": IGNORED_DEFAULT_OPTIONS,
    # oslo.middleware's deprecated route option: inspectord serves /healthcheck.
    "healthcheck": frozenset({"path"}),
    # Other oslo.middleware options: request body limit (inspectord has its own), old names.
    "oslo_middleware": frozenset({"max_request_body_size", "secure_proxy_ssl_header", "http_basic_auth_user_file"}),
    "database": IGNORED_DATABASE_OPTIONS,
    "keystone_authtoken": IGNORED_KEYSTONE_AUTHTOKEN_OPTIONS,
    "oslo_policy": frozenset(
        """enforce_scope policy_default_rule policy_dirs remote_content_type remote_ssl_ca_crt_file
        remote_ssl_client_crt_file remote_ssl_client_key_file remote_ssl_verify_server_crt
        remote_timeout""".split()
    ),
}


def _group_attr(group):
    return "default" if group == "DEFAULT" else group


def _make_conf():
    conf = cfg.ConfigOpts()
    for group, opts in _OPTS.items():
        conf.register_opts(opts, group=None if group == "DEFAULT" else group)
    # keystoneauth's options, declared without importing it (inspectord.keystone_options).
    keystone_options.register_options(conf, "ironic")
    keystone_options.register_options(conf, "swift")
    conf.set_default("auth_type", "password", group="swift")  # ironic-inspector's default
    return conf


def config_dir_files(directory):
    """The files oslo.config reads from a ``--config-dir``: ``*.conf``, sorted."""
    return sorted(glob.glob(os.path.join(directory, "*.conf")))


def _read_sections(path):
    """``{section: [keys]}`` of one file, parsed by oslo.config's own parser."""
    sections = {}
    try:
        cfg.ConfigParser(path, sections).parse()
    except cfg.ParseError as e:
        raise errors.ConfigError("cannot parse {}: {}".format(path, e)) from None
    except OSError as e:
        raise errors.ConfigError("cannot read {}: {}".format(path, e.strerror)) from None
    return {section: list(values) for section, values in sections.items()}


def _classify(conf, path, ignored, unknown):
    """Add the options of ``path`` inspectord does not use to ``ignored`` or ``unknown``."""
    for section, keys in _read_sections(path).items():
        if section in IGNORED_SECTIONS or section.startswith("oslo_messaging_"):
            ignored.update(("[{}]{}".format(section, k), None) for k in keys)
            continue
        if section in ("ironic", "swift"):
            known = keystone_options.known_options(conf, section)
        elif section in _OPTS:
            known = {o.dest for o in _OPTS[section]}
            known |= {d.name for o in _OPTS[section] for d in o.deprecated_opts if d.name}  # e.g. auth_uri
        else:
            unknown.update(("[{}]{}".format(section, k), None) for k in keys)
            if not keys:
                unknown["[{}]".format(section)] = None
            continue
        for key in keys:
            dest = key.replace("-", "_")
            if dest in known:
                continue
            if dest in IGNORED_OPTIONS.get(section, ()):
                ignored["[{}]{}".format(section, key)] = None
            else:
                unknown["[{}]{}".format(section, key)] = None


def _sources(path, config_files, config_dirs, sources):
    """The ``(kind, path)`` list to read, in order; kind is "file" or "dir"."""
    if sources is not None:
        return list(sources)
    result = [("file", path)] if path is not None else []
    result += [("file", f) for f in config_files or ()]
    result += [("dir", d) for d in config_dirs or ()]
    return result


def _field_type(opt):
    """The Python type of ``opt``'s frozen value (``Optional`` when it has no default)."""
    kind = opt.type
    if opt.multi or isinstance(kind, cfg_types.List):
        base = tuple
    elif isinstance(kind, cfg_types.Dict):
        base = dict
    elif isinstance(kind, cfg_types.Boolean):
        base = bool
    elif isinstance(kind, cfg_types.Float):
        base = float
    elif isinstance(kind, cfg_types.Integer):  # PortOpt and _Octal too
        base = int
    elif isinstance(kind, cfg_types.String):
        base = str
    else:
        raise TypeError("no frozen type for option {} of type {!r}".format(opt.dest, kind))
    return base if opt.default is not None else typing.Optional[base]


def _section_class(group, opts):
    """The frozen dataclass of one section, e.g. ``ProcessingOptions`` for ``[processing]``."""
    name = "{}Options".format(group.title().replace("_", ""))
    cls = dataclasses.make_dataclass(
        name, [(opt.dest, _field_type(opt)) for opt in opts], frozen=True, namespace={"__module__": __name__}
    )
    cls.__qualname__ = name
    cls.__doc__ = "The ``[{}]`` options, frozen.".format(group)
    return cls


#: ``{group: frozen dataclass}``; each class is also a name of this module.
SECTIONS = {group: _section_class(group, opts) for group, opts in _OPTS.items()}
globals().update({cls.__name__: cls for cls in SECTIONS.values()})


def _freeze(conf, group):
    values = conf if group == "DEFAULT" else conf[group]
    cls = SECTIONS[group]
    data = {}
    for field in dataclasses.fields(cls):
        value = values[field.name]
        if isinstance(value, list):
            value = tuple(value)
        elif isinstance(value, dict):
            value = dict(value)
        data[field.name] = value
    return cls(**data)


_S = SECTIONS
_Opt = typing.Optional


@dataclasses.dataclass(frozen=True)
class Config:
    """Every section, frozen; components are handed the sections they read."""

    default: _S["DEFAULT"]
    ironic: _S["ironic"]
    ironic_client: _S["ironic_client"]
    ironic_auth: IronicAuthOptions
    database: _S["database"]
    processing: _S["processing"]
    pxe_filter: _S["pxe_filter"]
    discovery: _S["discovery"]
    iptables: _S["iptables"]
    dnsmasq_pxe_filter: _S["dnsmasq_pxe_filter"]
    capabilities: _S["capabilities"]
    pci_devices: _S["pci_devices"]
    port_physnet: _S["port_physnet"]
    healthcheck: _S["healthcheck"]
    # The last --config-file (relative paths such as policy_file start there).
    path: _Opt[str] = None
    # Every file read, in order (--config-dir ones included).
    files: tuple = ()
    # ironic-inspector options inspectord accepts and does not use.
    ignored_options: tuple = ()
    # Options neither knows (misspelt, or dropped by ironic-inspector).
    unknown_options: tuple = ()
    ssl: _Opt[_S["ssl"]] = None
    keystone_authtoken: _Opt[_S["keystone_authtoken"]] = None
    oslo_policy: _Opt[_S["oslo_policy"]] = None
    http_basic: _Opt[_S["http_basic"]] = None
    nftables: _Opt[_S["nftables"]] = None
    builtin_dhcp: _Opt[_S["builtin_dhcp"]] = None
    dhcp_sniffer: _Opt[_S["dhcp_sniffer"]] = None
    discovery_limits: _Opt[_S["discovery_limits"]] = None
    extra_hardware: _Opt[_S["extra_hardware"]] = None
    accelerators: _Opt[_S["accelerators"]] = None
    ipmi_verification: _Opt[_S["ipmi_verification"]] = None
    api: _Opt[_S["api"]] = None
    swift: _Opt[_S["swift"]] = None
    # Loaded only with [processing]store_data=swift.
    swift_auth: _Opt[IronicAuthOptions] = None
    metrics: _Opt[_S["metrics"]] = None
    lifecycle: _Opt[_S["lifecycle"]] = None
    oslo_middleware: _Opt[_S["oslo_middleware"]] = None

    @property
    def processing_hooks(self):
        return tuple(h.strip() for h in self.processing.processing_hooks.split(",") if h.strip())


def load(path=None, overrides=None, config_files=(), config_dirs=(), sources=None):
    """Read the configuration and return a frozen :class:`Config`.

    :param path: one configuration file (or None: only defaults).
    :param config_files, config_dirs: more files, and directories whose
        ``*.conf`` files are read in name order, after ``path``.
    :param sources: instead of the above, ``[("file"|"dir", path), ...]`` in
        command-line order; later ones override earlier ones option by
        option, as oslo.config does with ``--config-file``/``--config-dir``.
    :param overrides: ``{(group, option): value}`` applied after the files,
        for tests and command-line flags.
    :raises errors.ConfigError: naming the invalid option or unreadable file.
    """
    conf = _make_conf()
    sources = _sources(path, config_files, config_dirs, sources)
    args, files = [], []
    for kind, source in sources:
        if kind == "dir":
            if not os.path.isdir(source):
                raise errors.ConfigError("configuration directory {} does not exist".format(source))
            files += config_dir_files(source)
        else:
            if not os.path.exists(source):
                raise errors.ConfigError("configuration file {} does not exist".format(source))
            files.append(source)
        args += ["--config-{}".format(kind), source]
    ignored, unknown = {}, {}  # dicts as ordered sets: each name once
    for source in files:
        _classify(conf, source, ignored, unknown)
    try:
        conf(
            args=args,
            project="inspectord",
            default_config_files=[],
            default_config_dirs=[],
            validate_default_values=True,
            use_env=False,
        )
        for (group, name), value in (overrides or {}).items():
            conf.set_override(name, value, group=None if group == "DEFAULT" else group)
        frozen = {_group_attr(g): _freeze(conf, g) for g in _OPTS}
    except (cfg.Error, ValueError) as e:
        raise errors.ConfigError("invalid configuration: {}".format(e)) from None
    ironic_auth = keystone_options.load_service_auth(conf)
    if frozen["processing"].store_data == "swift":
        frozen["swift_auth"] = keystone_options.load_service_auth(conf, "swift", "object-store")
    config_paths = [s for kind, s in sources if kind == "file"]
    result = Config(
        ironic_auth=ironic_auth,
        path=config_paths[-1] if config_paths else None,
        files=tuple(files),
        ignored_options=tuple(ignored),
        unknown_options=tuple(unknown),
        **frozen,
    )
    validate(result)
    return result




def validate(config):
    """Checks between options of the sections parsed here; raise ConfigError naming the option.

    Each component checks the sections it reads when the service tree is
    wired (:func:`inspectord.service.check`); this module imports none of
    them.
    """
    if config.default.auth_strategy == "keystone":
        keystone_options.validate_keystone_authtoken(config.keystone_authtoken)
    if config.processing.add_ports == "disabled" and config.processing.keep_ports == "added":
        raise errors.ConfigError(
            "[processing]add_ports=disabled cannot be combined with keep_ports=added; set keep_ports=all"
        )


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


_SWIFT_AUTH_SAMPLE = """\
# Used with [processing]store_data = swift.  Authentication to Swift
# (keystoneauth1 options, as ironic-inspector; auth_type defaults to
# password).  The object-store endpoint comes from the catalog unless
# endpoint_override (the account URL, http://HOST:8080/v1/AUTH_<project>)
# is set:
#auth_type = password
#auth_url = http://keystone.example.com:5000
#username = ironic-inspector
#password = SECRET
#project_name = service
#user_domain_name = Default
#project_domain_name = Default
#timeout = 60
# Swift without authentication in its pipeline:
#auth_type = none
#endpoint_override = http://127.0.0.1:8080/v1/AUTH_inspector
"""


def sample():
    """The sample configuration file, generated from the option definitions."""
    lines = [
        "# inspectord configuration.  Every option of ironic-inspector's that inspectord",
        "# implements has the same section and name, so an existing",
        "# ironic-inspector.conf can be used as it is.  Generated by",
        "# `python -m inspectord.config`; values shown are the defaults.",
        "#",
        "# Every option below is honoured.  ironic-inspector options not listed here",
        "# are accepted and ignored, named once in a warning at start: oslo.log",
        "# (inspectord logs through twistd), oslo.messaging and [coordination] (one",
        "# process; instances share the database), oslo.db pool tuning, [cors] (no",
        "# CORS headers: browsers are refused, as without [cors]), [mdns],",
        "# [service_catalog], keystonemiddleware tuning.  Options nobody knows are",
        "# named in the same way and never stop the start.  Refused: invalid values,",
        "# store_data = swift, [ssl]version = TLSv1/TLSv1_1, use_ssl = true without",
        "# a usable certificate and key.  The full list, option by option, with why",
        "# ignoring each is safe: doc/ironic-inspector-12.5.0-options.tsv.",
    ]
    for group, opts in _OPTS.items():
        lines += ["", "[{}]".format(group)]
        if group == "ironic":
            lines += _IRONIC_AUTH_SAMPLE.rstrip("\n").split("\n")
        elif group == "swift":
            lines += _SWIFT_AUTH_SAMPLE.rstrip("\n").split("\n")
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
