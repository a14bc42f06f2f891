"""API access policy: ironic-inspector's rules, evaluated without oslo.policy.

The rule names and default check strings are ironic-inspector 12.5.0's
(:data:`DEFAULTS`).  An operator overrides them in a YAML (or JSON) file,
``[oslo_policy]policy_file``, written in oslo.policy's check-string
language; :func:`parse` understands the part of it policies use:

- ``@`` (always), ``!`` (never), ``""`` (always);
- ``role:NAME`` (case-insensitive, like oslo.policy);
- ``rule:NAME`` (another rule of the table);
- generic checks ``KEY:VALUE`` against the credentials, with dotted keys
  (``system_scope:all``, ``is_admin_project:True``, ``user_id:%(owner)s``
  with ``%(name)s`` taken from the target), and literal left sides
  (``'alice':%(user_name)s``, ``True:%(flag)s``);
- ``and``, ``or``, ``not`` and parentheses (``not`` binds tighter than
  ``and``, ``and`` tighter than ``or``).

``http:`` and ``https:`` checks (oslo.policy's remote checks, blocking
HTTP calls) are refused when the file is loaded, as is any syntax error:
at start-up that is a configuration error, on a later reload the previous
rules stay in force and the error is logged.

Why not oslo.policy itself: its :class:`Enforcer` wants an oslo.config
object to read and register options on, re-reads the policy file (a
blocking ``stat`` and read) from inside ``enforce()`` on the reactor thread,
and can make blocking HTTP calls for ``http:`` rules.  The evaluation
itself is ~150 lines; here it is pure functions over plain data, and the
file is watched from a thread pool (:class:`inspectord.watchedfile.WatchedFile`).

Credentials (``creds``) are a plain dict shaped like oslo.context's
``to_policy_values()``: ``roles`` (list of names), ``user_id``,
``project_id``, ``system_scope`` (``"all"`` or None), ``is_admin_project``...
"""

import ast
import dataclasses
import json
import re

from twisted.logger import Logger

from inspectord import errors
from inspectord.watchedfile import WatchedFile

# ironic-inspector 12.5.0, ironic_inspector/policy.py
SYSTEM_ADMIN = "role:admin and system_scope:all"
ADMIN = "(" + SYSTEM_ADMIN + ") or (role:admin) or (role:service)"
SYSTEM_READER = "role:reader and system_scope:all"
READER = "(" + SYSTEM_READER + ") or (role:admin) or (role:service)"
_DEPRECATED_ADMIN = "rule:is_admin"


@dataclasses.dataclass(frozen=True)
class RuleDefault:
    name: str
    check_str: str
    description: str
    operations: tuple = ()
    # What the rule was before the system-scope defaults; applied (or'ed in)
    # only with [oslo_policy]enforce_new_defaults=False.
    deprecated_check_str: str = None
    # Endpoints inspectord keeps open whatever the policy says.
    public: bool = False


DEFAULTS = (
    RuleDefault("is_admin", "role:admin or role:administrator or role:baremetal_admin", "Full read/write API access"),
    RuleDefault("is_observer", "role:baremetal_observer", "Read-only API access"),
    RuleDefault("public_api", "is_public_api:True", "Internal flag for public API routes"),
    RuleDefault("default", "!", "Default API access policy"),
    RuleDefault(
        "introspection", "rule:public_api", "Access the API root for available versions information",
        (("GET", "/"),), public=True,
    ),
    RuleDefault(
        "introspection:version", "rule:public_api", "Access the versioned API root for version information",
        (("GET", "/v1"), ("GET", "/v1/openapi.json")), public=True,
    ),
    RuleDefault(
        "introspection:continue", "rule:public_api", "Ramdisk callback to continue introspection",
        (("POST", "/v1/continue"),), public=True,
    ),
    RuleDefault(
        "introspection:status", READER, "Get introspection status",
        # (and inspectord's status page)
        (("GET", "/v1/introspection"), ("GET", "/v1/introspection/{node_id}"), ("GET", "/ui"),
         ("GET", "/ui/nodes/{node_id}")),
        "rule:is_admin or rule:is_observer",
    ),
    RuleDefault(
        "introspection:start", ADMIN, "Start introspection",
        (("POST", "/v1/introspection/{node_id}"),), _DEPRECATED_ADMIN,
    ),
    RuleDefault(
        "introspection:abort", ADMIN, "Abort introspection",
        (("POST", "/v1/introspection/{node_id}/abort"),), _DEPRECATED_ADMIN,
    ),
    RuleDefault(
        "introspection:data", ADMIN, "Get introspection data",
        # (ironic-inspector's documentation omits GET .../data/unprocessed; its code uses this rule)
        (("GET", "/v1/introspection/{node_id}/data"), ("GET", "/v1/introspection/{node_id}/data/unprocessed")),
        _DEPRECATED_ADMIN,
    ),
    RuleDefault(
        "introspection:reapply", ADMIN, "Reapply introspection on stored data",
        (("POST", "/v1/introspection/{node_id}/data/unprocessed"),), _DEPRECATED_ADMIN,
    ),
    RuleDefault(
        "introspection:rule:get", ADMIN, "Get introspection rule(s)",
        (("GET", "/v1/rules"), ("GET", "/v1/rules/{rule_id}")), _DEPRECATED_ADMIN,
    ),
    RuleDefault(
        "introspection:rule:delete", ADMIN, "Delete introspection rule(s)",
        (("DELETE", "/v1/rules"), ("DELETE", "/v1/rules/{rule_id}")), _DEPRECATED_ADMIN,
    ),
    RuleDefault(
        "introspection:rule:create", ADMIN, "Create introspection rule",
        (("POST", "/v1/rules"),), _DEPRECATED_ADMIN,
    ),
)
DEFAULTS_BY_NAME = {d.name: d for d in DEFAULTS}


class PolicyError(ValueError):
    """A check string or policy file cannot be used."""


# -- checks: callables (creds, target, rules, seen) -> bool ---------------------


class _Always:
    def __init__(self, result):
        self.result = result

    def __call__(self, creds, target, rules, seen):
        return self.result

    def __str__(self):
        return "@" if self.result else "!"


class _Not:
    def __init__(self, check):
        self.check = check

    def __call__(self, creds, target, rules, seen):
        return not self.check(creds, target, rules, seen)

    def __str__(self):
        return "not {}".format(self.check)


class _And:
    def __init__(self, checks):
        self.checks = checks

    def __call__(self, creds, target, rules, seen):
        return all(c(creds, target, rules, seen) for c in self.checks)

    def __str__(self):
        return "(" + " and ".join(map(str, self.checks)) + ")"


class _Or:
    def __init__(self, checks):
        self.checks = checks

    def __call__(self, creds, target, rules, seen):
        return any(c(creds, target, rules, seen) for c in self.checks)

    def __str__(self):
        return "(" + " or ".join(map(str, self.checks)) + ")"


_TARGET_REF = re.compile(r"%\(([^)]+)\)s")


def _substitute(match, target):
    """``match`` with ``%(name)s`` taken from ``target``; None if one is missing."""
    try:
        return _TARGET_REF.sub(lambda m: str(target[m.group(1)]), match)
    except KeyError:
        return None


class _RuleRef:
    def __init__(self, name):
        self.name = name

    def __call__(self, creds, target, rules, seen):
        check = rules.get(self.name)
        if check is None or self.name in seen:  # unknown, or a loop: deny
            return False
        return check(creds, target, rules, seen | {self.name})

    def __str__(self):
        return "rule:" + self.name


class _Role:
    def __init__(self, match):
        self.match = match

    def __call__(self, creds, target, rules, seen):
        wanted = _substitute(self.match, target)
        if wanted is None:
            return False
        return wanted.lower() in [str(r).lower() for r in creds.get("roles") or ()]

    def __str__(self):
        return "role:" + self.match


class _Generic:
    """``key:value``: the credential at ``key`` (dotted path) equals ``value`` as text."""

    def __init__(self, kind, match):
        self.kind = kind
        self.match = match
        try:
            self.literal = ast.literal_eval(kind)
        except (ValueError, SyntaxError):
            self.literal = _NO_LITERAL

    def __call__(self, creds, target, rules, seen):
        match = _substitute(self.match, target)
        if match is None:
            return False
        if self.literal is not _NO_LITERAL:
            return match == str(self.literal)
        return _find(creds, self.kind.split("."), match)

    def __str__(self):
        return "{}:{}".format(self.kind, self.match)


_NO_LITERAL = object()


def _find(value, path, match):
    if not path:
        return match == str(value)
    if not isinstance(value, dict) or path[0] not in value:
        return False
    value = value[path[0]]
    if isinstance(value, (list, tuple)):
        return any(_find(v, path[1:], match) for v in value)
    return _find(value, path[1:], match)


# -- parsing -------------------------------------------------------------------


def _tokenize(text):
    for word in text.split():
        while word.startswith("("):
            yield "("
            word = word[1:]
        closing = 0
        while word.endswith(")"):
            closing += 1
            word = word[:-1]
        if word:
            yield word
        for _ in range(closing):
            yield ")"


def _atom(token):
    if token == "@":
        return _Always(True)
    if token == "!":
        return _Always(False)
    kind, sep, match = token.partition(":")
    if not sep or not kind:
        raise PolicyError("{!r} is not a check (expected kind:value, @ or !)".format(token))
    if kind == "rule":
        return _RuleRef(match)
    if kind == "role":
        return _Role(match)
    if kind in ("http", "https"):
        raise PolicyError("remote checks ({}:) are not supported".format(kind))
    return _Generic(kind, match)


class _Parser:
    def __init__(self, text):
        self.tokens = list(_tokenize(text))
        self.pos = 0

    def peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self):
        token = self.peek()
        self.pos += 1
        return token

    def parse(self):
        if not self.tokens:
            return _Always(True)
        check = self.disjunction()
        if self.peek() is not None:
            raise PolicyError("unexpected {!r}".format(self.peek()))
        return check

    def disjunction(self):
        checks = [self.conjunction()]
        while self.peek() == "or":
            self.take()
            checks.append(self.conjunction())
        return checks[0] if len(checks) == 1 else _Or(checks)

    def conjunction(self):
        checks = [self.negation()]
        while self.peek() == "and":
            self.take()
            checks.append(self.negation())
        return checks[0] if len(checks) == 1 else _And(checks)

    def negation(self):
        if self.peek() == "not":
            self.take()
            return _Not(self.negation())
        return self.primary()

    def primary(self):
        token = self.take()
        if token is None:
            raise PolicyError("unexpected end of rule")
        if token == "(":
            check = self.disjunction()
            if self.take() != ")":
                raise PolicyError("missing )")
            return check
        if token in (")", "and", "or", "not"):
            raise PolicyError("unexpected {!r}".format(token))
        return _atom(token)


def parse(text):
    """A check from an oslo.policy check string; :class:`PolicyError` if it is invalid."""
    if not isinstance(text, str):
        raise PolicyError("a rule must be a string, not {}".format(type(text).__name__))
    try:
        return _Parser(text).parse()
    except PolicyError as e:
        raise PolicyError("{}: {}".format(text if text.strip() else repr(text), e)) from None


# -- rule tables ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Rules:
    """The effective rule table: defaults with the policy file's overrides."""

    checks: dict
    overridden: frozenset = frozenset()
    warnings: tuple = ()

    def authorize(self, rule, creds, target=None):
        """True if ``creds`` pass ``rule`` (an unknown rule name denies)."""
        check = self.checks.get(rule)
        if check is None:
            return False
        return bool(check(creds, target or {}, self.checks, frozenset([rule])))


def build_rules(overrides=None, enforce_new_defaults=True):
    """:class:`Rules` from ``{name: check string}`` overrides on top of :data:`DEFAULTS`."""
    overrides = dict(overrides or {})
    checks = {}
    for default in DEFAULTS:
        if default.name in overrides:
            continue
        check = parse(default.check_str)
        if not enforce_new_defaults and default.deprecated_check_str:
            check = _Or([check, parse(default.deprecated_check_str)])
        checks[default.name] = check
    for name, text in overrides.items():
        if not isinstance(name, str):
            raise PolicyError("rule names must be strings, not {!r}".format(name))
        try:
            checks[name] = parse(text)
        except PolicyError as e:
            raise PolicyError("rule {}: {}".format(name, e)) from None
    return Rules(checks, frozenset(overrides), tuple(file_warnings(overrides)))


def parse_policy_file(text):
    """``{name: check string}`` from a YAML (or JSON, a subset) policy file."""
    import yaml  # only a policy file needs it

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise PolicyError("not valid YAML: {}".format(e)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PolicyError("expected a mapping of rule names to check strings")
    return data


def file_warnings(overrides):
    """Human-readable warnings about a policy file's overrides (typos, public rules)."""
    warnings = []
    for name in sorted(overrides):
        default = DEFAULTS_BY_NAME.get(name)
        if default is None:
            warnings.append("rule {} is not one of inspectord's (a typo?)".format(name))
        elif default.public:
            warnings.append("rule {} is ignored: {} stays public".format(name, default.operations[0][1]))
    return warnings


class Enforcer:
    """Authorizes credentials against the rules of a watched policy file (or the defaults).

    :param path: the policy file; None for the defaults only.
    :param required: whether a missing file is a start-up error (an
        explicitly configured path) or means the defaults (the default path).
    """

    log = Logger()

    def __init__(self, path, pool, clock, required=False, enforce_new_defaults=True):
        self._enforce_new_defaults = enforce_new_defaults
        self._defaults = build_rules({}, enforce_new_defaults)
        self._file = None
        if path is None:
            return
        self._file = WatchedFile(
            path, self._parse, pool, clock, missing=None if required else self._defaults, what="policy file",
            on_load=self._loaded,
        )
        try:
            self._file.load_now()
        except (OSError, ValueError) as e:
            raise errors.ConfigError("[oslo_policy]policy_file {}: {}".format(path, e)) from None

    def _parse(self, text):
        return build_rules(parse_policy_file(text), self._enforce_new_defaults)

    def _loaded(self, rules):
        for warning in rules.warnings:
            self.log.warn("Policy file {path}: {warning}", path=self._file.path, warning=warning)

    async def rules(self):
        if self._file is None:
            return self._defaults
        return await self._file.get()

    async def enforce(self, rule, creds, target=None):
        """Return if ``creds`` pass ``rule``; raise :class:`errors.AccessDenied` naming it if not."""
        rules = await self.rules()
        if not rules.authorize(rule, creds, target):
            raise errors.AccessDenied("Access denied by policy: rule {} does not allow this request".format(rule))


def sample():
    """A policy file listing every rule with its default, commented out (YAML)."""
    lines = ["# inspectord API policy: ironic-inspector's rule names and defaults."]
    for default in DEFAULTS:
        lines.append("")
        lines.append("# " + default.description)
        for method, path in default.operations:
            lines.append("# {} {}".format(method, path))
        if default.public:
            lines.append("# (inspectord keeps this endpoint public; overriding it has no effect)")
        lines.append("#{}: {}".format(json.dumps(default.name), json.dumps(default.check_str)))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(sample(), end="")
