"""The documentation builds (Sphinx, warnings as errors) with its generated configuration reference."""

import os
import shutil
import subprocess
import sys
import tempfile

from twisted.trial import unittest

from tests.integration.base import SKIP

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build(source, out):
    return subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html", source, out], capture_output=True, text=True
    )


class DocsTests(unittest.TestCase):
    skip = SKIP

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="inspectord-docs-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def test_builds_without_warnings(self):
        out = os.path.join(self.tmp, "html")
        result = build(os.path.join(ROOT, "doc", "source"), out)
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        with open(os.path.join(out, "configuration.html"), encoding="utf-8") as f:
            page = f.read()
        # Generated from the code: every section of the sample, every ironic-inspector option.
        self.assertIn("listen_unix_socket", page)
        self.assertIn("enroll_node_fields", page)
        with open(os.path.join(ROOT, "doc", "ironic-inspector-12.5.0-options.tsv")) as f:
            options = len(f.readlines()) - 1
        self.assertEqual(page.count("<td><p>honoured</p></td>") + page.count("<td><p>ignored</p></td>"), options)

    def test_a_broken_reference_fails_the_build(self):
        doc = os.path.join(self.tmp, "doc")
        shutil.copytree(os.path.join(ROOT, "doc"), doc, ignore=shutil.ignore_patterns("_generated", "build"))
        shutil.copy(os.path.join(ROOT, "README.rst"), self.tmp)  # the index includes it
        source = os.path.join(doc, "source")
        self.assertEqual(build(source, os.path.join(self.tmp, "ok")).returncode, 0)  # the copy builds
        with open(os.path.join(source, "running.rst"), "a") as f:
            f.write("\nSee `No such section`_.\n")
        result = build(source, os.path.join(self.tmp, "html"))
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("unknown target name: \"no such section\"", result.stderr.lower())
