"""Print the memory a Python process needs just to import a list of modules.

``python importfloor.py MODULES_FILE`` imports every module named in the file
(one per line, in order: what :mod:`bench.launch` recorded of a service),
skipping those that fail, and prints JSON: ``{"rss_kb", "hwm_kb",
"imported", "failed"}`` read from ``/proc/self/status``.  This is the
service's *import floor*: the memory its code and libraries cost before it
does any work.

Standard library only: it runs inside the measured service's own virtualenv.
"""

import importlib
import json
import sys


def _status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def main():
    del sys.path[0]  # this file's directory must not shadow anything
    with open(sys.argv[1]) as f:
        names = [line.strip() for line in f if line.strip()]
    imported = failed = 0
    for name in names:
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
            imported += 1
        except BaseException:  # noqa: B036 - some modules only import inside their package's set-up
            failed += 1
    print(json.dumps({"rss_kb": _status("VmRSS"), "hwm_kb": _status("VmHWM"), "imported": imported, "failed": failed}))


if __name__ == "__main__":
    main()
