"""keystoneauth's options of ``[ironic]``, ``[swift]`` and ``[keystone_authtoken]``, read without keystoneauth.

Like :mod:`inspectord.config`, a leaf: it imports nothing of inspectord
but :mod:`inspectord.errors`.  The options keystoneauth registers on
``[ironic]``/``[swift]`` (auth, session, adapter) are declared here
statically (:data:`SESSION_OPTS`, :data:`ADAPTER_OPTS`,
:data:`PLUGIN_OPTIONS`), so that reading and classifying the files does
not import keystoneauth1, requests and urllib3 (about 4 MB); a unit test
checks the declaration against the installed keystoneauth.  keystoneauth
itself is imported only when a section uses Keystone (``auth_type`` other
than ``none``/``http_basic``).  The client that uses what is loaded here
(service tokens, catalog endpoints) is :mod:`inspectord.keystone`.
"""

import base64
import dataclasses

from oslo_config import cfg

from inspectord import errors

#: ``auth_type`` values that need no Keystone (nor keystoneauth).
WITHOUT_KEYSTONE = ("none", "http_basic")

# -- options ------------------------------------------------------------------
# keystoneauth's conf options for a section (register_auth_conf_options,
# register_session_conf_options, register_adapter_conf_options), declared
# statically so that reading them does not import keystoneauth.

AUTH_COMMON_OPTS = [
    cfg.Opt("auth_type", type=str, deprecated_opts=[cfg.DeprecatedOpt("auth_plugin")],
            help="Authentication type to load"),
    cfg.Opt("auth_section", type=str, help="Config Section from which to load plugin specific options"),
]

SESSION_OPTS = [
    cfg.StrOpt("cafile", help="PEM encoded Certificate Authority to use when verifying HTTPs connections."),
    cfg.StrOpt("certfile", help="PEM encoded client certificate cert file"),
    cfg.StrOpt("keyfile", help="PEM encoded client certificate key file"),
    cfg.BoolOpt("insecure", default=False, help="Verify HTTPS connections."),
    cfg.FloatOpt("timeout", help="Timeout value for http requests"),
    cfg.BoolOpt("collect_timing", default=False, help="Collect per-API call timing information."),
    cfg.BoolOpt("split_loggers", default=False, help="Log requests to multiple loggers."),
    cfg.StrOpt("tls_ciphers", help="An OpenSSL cipher string for TLS connections."),
    cfg.StrOpt("tls_min_version", choices=[None, "1.2", "1.3"], help="The minimum TLS version to require."),
]

ADAPTER_OPTS = [
    cfg.StrOpt("service_type", help="The default service_type for endpoint URL discovery."),
    cfg.StrOpt("service_name", help="The default service_name for endpoint URL discovery."),
    cfg.ListOpt("valid_interfaces", help="List of interfaces, in order of preference, for endpoint URL."),
    cfg.StrOpt("region_name", help="The default region_name for endpoint URL discovery."),
    cfg.StrOpt("endpoint_override", help="Always use this endpoint URL for requests for this client."),
    cfg.StrOpt("version", help="Minimum Major API version within a given Major API version."),
    cfg.StrOpt("min_version", help="The minimum major version of a given API."),
    cfg.StrOpt("max_version", help="The maximum major version of a given API."),
    cfg.IntOpt("connect_retries", help="The maximum number of retries for connection errors."),
    cfg.FloatOpt("connect_retry_delay", help="Delay (in seconds) between two retries for connection errors."),
    cfg.IntOpt("status_code_retries", help="The maximum number of retries for retriable HTTP status codes."),
    cfg.FloatOpt("status_code_retry_delay", help="Delay (in seconds) between two status code retries."),
    cfg.ListOpt("retriable_status_codes", help="List of retriable HTTP status codes."),
    cfg.StrOpt(
        "interface",
        deprecated_for_removal=True,
        deprecated_reason="Using valid-interfaces allows for the specification of multiple interfaces.",
        help="The default interface for endpoint URL discovery.",
    ),
]

#: Option names (old names included) of the keystoneauth plugins whose
#: options may appear in ``[ironic]``/``[swift]`` whatever ``auth_type`` says.
PLUGIN_OPTIONS = {
    "password": (
        "auth_url system_scope domain_id domain_name project_id tenant_id project_name tenant_name "
        "project_domain_id project_domain_name trust_id default_domain_id default_domain_name user_id "
        "username user_name user_domain_id user_domain_name password"
    ).split(),
    "v3applicationcredential": (
        "auth_url system_scope domain_id domain_name project_id project_name project_domain_id "
        "project_domain_name trust_id user_id username user_name user_domain_id user_domain_name "
        "application_credential_secret application_credential_id application_credential_name"
    ).split(),
    "token": (
        "auth_url system_scope domain_id domain_name project_id tenant_id project_name tenant_name "
        "project_domain_id project_domain_name trust_id default_domain_id default_domain_name token"
    ).split(),
    "none": ["endpoint"],
    "http_basic": ["username", "user_name", "password", "endpoint"],
}

# keystoneauth's http_basic plugin options, read without keystoneauth.
_HTTP_BASIC_OPTS = [
    cfg.StrOpt("username", deprecated_opts=[cfg.DeprecatedOpt("user-name"), cfg.DeprecatedOpt("user_name")],
               help="Username"),
    cfg.StrOpt("password", secret=True, help="User's password"),
    cfg.StrOpt("endpoint", help="The endpoint that will always be used"),
]


def register_options(conf, group):
    """Register keystoneauth's auth, session and adapter options on ``group`` (without keystoneauth)."""
    conf.register_opts(AUTH_COMMON_OPTS + SESSION_OPTS + ADAPTER_OPTS, group=group)


def known_options(conf, group):
    """Option names of ``[ironic]``/``[swift]``, with the old names keystoneauth still accepts (tenant_name...)."""
    names = set(conf[group]) | {"auth_plugin"}
    for plugin_names in PLUGIN_OPTIONS.values():
        names.update(plugin_names)
    return names


def uses_keystone(auth_type):
    return (auth_type or "none") not in WITHOUT_KEYSTONE


@dataclasses.dataclass(frozen=True)
class IronicAuthOptions:
    """What a client of Ironic (or Swift) needs to authenticate: a keystoneauth plugin, basic or none."""

    auth_type: str
    endpoint_override: str
    service_type: str
    interface: object
    region_name: str
    # Loaded keystoneauth plugin and session; None without Keystone.
    auth: object = dataclasses.field(repr=False, compare=False, default=None)
    session: object = dataclasses.field(repr=False, compare=False, default=None)
    # keystoneauth's session timeout option (seconds), if set.
    timeout: float = None
    # keystoneauth's TLS session options: how the service's HTTPS is verified
    # (inspectord.tls_client.https_policy), for Keystone and the service alike.
    cafile: str = None
    insecure: bool = False
    certfile: str = None
    keyfile: str = None
    # auth_type=http_basic: the Authorization header sent with every request.
    headers: dict = dataclasses.field(repr=False, compare=False, default=None)


def load_service_auth(conf, name="ironic", service_type="baremetal"):
    """:class:`IronicAuthOptions` of ``[name]``; keystoneauth is imported only if it uses Keystone."""
    group = conf[name]
    auth_type = group.auth_type or "none"
    auth = session = headers = None
    endpoint = group.endpoint_override
    try:
        if auth_type == "http_basic":
            conf.register_opts(_HTTP_BASIC_OPTS, group=name)
            group = conf[name]
            if not group.username:
                raise errors.ConfigError("[{0}]username is required with [{0}]auth_type=http_basic".format(name))
            endpoint = endpoint or group.endpoint
            credentials = "{}:{}".format(group.username, group.password or "").encode("utf-8")
            headers = {"Authorization": "Basic " + base64.b64encode(credentials).decode("ascii")}
        elif auth_type != "none":
            from keystoneauth1 import loading as ks_loading

            auth = ks_loading.load_auth_from_conf_options(conf, name)
            session = ks_loading.load_session_from_conf_options(conf, name, auth=auth)
    except errors.ConfigError:
        raise
    except Exception as e:  # keystoneauth raises many types; all mean bad config
        raise errors.ConfigError("invalid [{}] authentication options: {}".format(name, e)) from None
    if auth is None and not endpoint:
        raise errors.ConfigError(
            "[{0}]endpoint_override is required with [{0}]auth_type={1}".format(name, auth_type)
        )
    return IronicAuthOptions(
        auth_type=auth_type,
        endpoint_override=endpoint,
        service_type=group.service_type or service_type,
        interface=tuple(group.valid_interfaces or ["internal", "public"]),
        region_name=group.region_name,
        auth=auth,
        session=session,
        timeout=group.timeout,
        cafile=group.cafile or None,
        insecure=bool(group.insecure),
        certfile=group.certfile or None,
        keyfile=group.keyfile or None,
        headers=headers,
    )


def validate_keystone_authtoken(ks):
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
