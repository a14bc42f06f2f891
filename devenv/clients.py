"""Real OpenStack clients of the introspection API, from their own cached venv.

``python-ironic-inspector-client`` with ``python-openstackclient`` (the
``openstack baremetal introspection`` commands) and ``openstacksdk``'s
``baremetal_introspection`` proxy, run as subprocesses exactly as an
operator would run them.
"""

import os
import subprocess

from devenv.venvs import ensure_venv

CLIENT_REQUIREMENTS = [
    "python-openstackclient==10.5.0",
    "python-ironic-inspector-client==5.4.0",
    "openstacksdk==4.22.0",
]


def venv():
    return ensure_venv("clients", CLIENT_REQUIREMENTS)


def _env(extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update(extra or {})
    return env


def openstack(args, inspector_url, api_version=None, env=None, timeout=120):
    """Run ``openstack ARGS`` with no auth against ``inspector_url``.

    :returns: ``subprocess.CompletedProcess`` (text output).
    """
    extra = {"OS_AUTH_TYPE": "none", "INSPECTOR_URL": inspector_url}
    if api_version:
        extra["INSPECTOR_VERSION"] = api_version
    extra.update(env or {})
    return subprocess.run(
        [str(venv() / "bin" / "openstack"), *args],
        env=_env(extra),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def python(code, env=None, timeout=120):
    """Run Python ``code`` in the clients' venv (for openstacksdk)."""
    return subprocess.run(
        [str(venv() / "bin" / "python"), "-c", code],
        env=_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
