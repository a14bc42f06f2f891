"""Cached virtualenvs for the real services that tests, the demo and benchmarks run.

:func:`ensure_venv` builds a virtualenv once with ``uv`` under
``$INSPECTORD_CACHE/venvs/<name>`` (``INSPECTORD_CACHE`` defaults to
``~/.cache/inspectord``) and returns its path.  A marker file holding the
requirement list is written only after a successful install, so a venv left
half-built by an interrupted run, or built from other requirements, is built
again.  An exclusive ``fcntl`` lock next to the venv keeps two processes from
building the same venv at once; the second one waits and then reuses it.

Standard library only: this module must work before any of the project's
dependencies are installed.
"""

import contextlib
import fcntl
import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence

MARKER_NAME = ".inspectord-requirements"
"""File inside a venv holding its requirement list, one per line, once installed."""


class VenvError(RuntimeError):
    """Building a virtualenv failed."""


def cache_dir() -> pathlib.Path:
    """The inspectord cache directory: ``$INSPECTORD_CACHE`` or ``~/.cache/inspectord``."""
    configured = os.environ.get("INSPECTORD_CACHE")
    return pathlib.Path(configured) if configured else pathlib.Path.home() / ".cache" / "inspectord"


def venv_dir(name: str) -> pathlib.Path:
    """Where the venv called ``name`` lives (whether or not it is built)."""
    return cache_dir() / "venvs" / name


def ensure_venv(name: str, requirements: Sequence[str], python: str = "python3.11") -> pathlib.Path:
    """Return the path of venv ``name`` with ``requirements`` installed, building it if needed.

    ``python`` is the interpreter the venv is made from: a command on PATH,
    a path, or a version request such as ``"3.11"`` that uv resolves among
    the interpreters already installed (uv never downloads one here).
    Raises :class:`VenvError` if the build fails.
    """
    venv = venv_dir(name)
    requirements = list(requirements)
    wanted = "".join(f"{requirement}\n" for requirement in requirements)
    if _is_built(venv, wanted):
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(venv.parent / f".{name}.lock", name):
        if _is_built(venv, wanted):  # another process built it while we waited
            return venv
        _build(venv, requirements, python)
        _write_atomically(venv / MARKER_NAME, wanted)
        _progress(f"virtualenv {venv} is ready")
    return venv


def _is_built(venv: pathlib.Path, wanted: str) -> bool:
    try:
        return (venv / MARKER_NAME).read_text() == wanted
    except OSError:
        return False


@contextlib.contextmanager
def _exclusive_lock(path: pathlib.Path, name: str) -> Iterator[None]:
    with open(path, "a") as lock_file:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _progress(f"waiting for another process to build the {name!r} virtualenv")
            fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _build(venv: pathlib.Path, requirements: list[str], python: str) -> None:
    _progress(f"building virtualenv {venv} with {' '.join(requirements)}")
    if venv.exists():
        _progress(f"removing incomplete or outdated {venv}")
        shutil.rmtree(venv)
    uv = _uv_command()
    _run([*uv, "venv", "--no-python-downloads", "--python", shutil.which(python) or python, str(venv)])
    # --python, not VIRTUAL_ENV: "python -m uv pip" would install into the
    # interpreter running uv instead.
    _run([*uv, "pip", "install", "--python", str(venv / "bin" / "python"), *requirements])


def _write_atomically(path: pathlib.Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.replace(path)


def _uv_command() -> list[str]:
    """The command that runs uv: ``uv`` from PATH, else ``python -m uv`` (installed if missing)."""
    uv = shutil.which("uv")
    if uv:
        return [uv]
    if importlib.util.find_spec("uv") is None:
        _progress(f"uv is not on PATH: installing it with {sys.executable} -m pip")
        if importlib.util.find_spec("pip") is None:
            _run([sys.executable, "-m", "ensurepip", "--default-pip"])
        _run([sys.executable, "-m", "pip", "install", "uv"])
    return [sys.executable, "-m", "uv"]


def _run(command: list[str]) -> None:
    """Run ``command``, copying its output to stderr; raise :class:`VenvError` on failure."""
    _progress("$ " + " ".join(command))
    with subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    ) as process:
        assert process.stdout is not None
        output = []
        for line in process.stdout:
            output.append(line)
            sys.stderr.write(line)
        sys.stderr.flush()
    if process.returncode != 0:
        tail = "".join(output[-40:])
        raise VenvError(f"{command[0]} failed with exit status {process.returncode}:\n{tail}")


def _progress(message: str) -> None:
    print(f"[devenv] {message}", file=sys.stderr, flush=True)
