"""What ``pip install .`` ships: the daemon only.

The wheel is built from a copy of the tracked files (as a clean checkout
would have them), so build output never lands in the working tree.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

from twisted.trial import unittest

from tests.integration.base import SKIP

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _tracked_copy(destination):
    names = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True
    ).stdout.decode().split("\0")
    for name in filter(None, names):
        source = os.path.join(ROOT, name)
        if not os.path.isfile(source):  # deleted in the working tree
            continue
        target = os.path.join(destination, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(source, target)


_built = None


def _build():
    """Build the wheel once per test run; remember its file list and entry points."""
    global _built
    tmp = tempfile.mkdtemp(prefix="inspectord-wheel-")
    try:
        source = os.path.join(tmp, "src")
        _tracked_copy(source)
        out = os.path.join(tmp, "dist")
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
             "--wheel-dir", out, source],
            check=True, capture_output=True,
        )
        (wheel,) = [n for n in os.listdir(out) if n.endswith(".whl")]
        with zipfile.ZipFile(os.path.join(out, wheel)) as archive:
            names = archive.namelist()
            entry_points = next(
                archive.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt")
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _built = names, entry_points


class WheelContentsTests(unittest.TestCase):
    skip = SKIP

    def setUp(self):
        if _built is None:
            _build()
        self.names, self.entry_points = _built

    def test_only_the_daemon_and_its_plugin(self):
        stray = [
            n for n in self.names
            if not n.startswith("inspectord/")
            and n != "twisted/plugins/inspectord_plugin.py"
            and ".dist-info/" not in n
        ]
        self.assertEqual(stray, [])

    def test_no_test_demo_or_benchmark_tooling(self):
        for prefix in ("devenv/", "bench/", "tests/", "inspectord/devenv/", "inspectord/dhcp/probe.py"):
            self.assertEqual([n for n in self.names if n.startswith(prefix)], [], prefix)

    def test_daemon_files_present(self):
        for name in ("inspectord/tap.py", "inspectord/store/migrations/versions/0001_initial.py",
                     "inspectord/store/migrations/script.py.mako", "inspectord/hooks/known_accelerators.yaml",
                     "inspectord/hooks/standard.py"):
            self.assertIn(name, self.names)
        self.assertNotIn("twisted/plugins/__init__.py", self.names)

    def test_console_scripts(self):
        self.assertIn("inspectord-dbsync = inspectord.tap:main_dbsync_exit", self.entry_points)
