"""Run a console script and, when it exits, write the names of every module it imported.

``python launch.py MODULES_FILE SCRIPT [ARGS...]`` runs ``SCRIPT`` as
``__main__`` (as its own shebang line would) with ``sys.argv`` set to
``[SCRIPT, ARGS...]``.  At exit, ``MODULES_FILE`` receives ``sys.modules``'
names in import order, so that :mod:`bench.importfloor` can load exactly the
same modules in a fresh interpreter and measure what they cost.  The list
is also written when SIGTERM arrives, before the service's own handler runs:
twistd ends by sending itself the signal again, which skips ``atexit``.

Standard library only: it runs inside the measured service's own virtualenv.
"""

import atexit
import os
import runpy
import signal
import sys


def _dump(path):
    names = [name for name in list(sys.modules) if name != "__main__"]
    with open(path, "w") as f:
        f.write("\n".join(names) + "\n")


def _wrap_sigterm(path):
    """Make every SIGTERM handler the service installs write the list first."""
    install = signal.signal

    def patched(signum, handler):
        if signum == signal.SIGTERM and callable(handler):
            inner = handler

            def handler(number, frame):
                _dump(path)
                return inner(number, frame)

        return install(signum, handler)

    signal.signal = patched


def main():
    modules_file, script = sys.argv[1], sys.argv[2]
    sys.argv = sys.argv[2:]
    # The script's directory, not this one, leads sys.path, as when it runs itself.
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    atexit.register(_dump, modules_file)
    _wrap_sigterm(modules_file)
    preload = os.environ.pop("BENCH_PRELOAD", None)
    if preload:  # bench/experiments.py: patches tried out on the service
        runpy.run_path(preload, run_name="__bench_preload__")
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
