"""Sphinx configuration of inspectord's documentation.

The configuration reference is generated here from the option definitions
(``inspectord.config.sample()``) and from the table of ironic-inspector's
options (``doc/ironic-inspector-12.5.0-options.tsv``), so it cannot drift
from the code.
"""

import csv
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)

project = "inspectord"
author = "the inspectord authors"
copyright = "2026, " + author
extensions = []
exclude_patterns = ["_generated/README.txt"]
html_theme = "alabaster"
html_static_path = []


def _generate():
    from inspectord import config

    out = os.path.join(HERE, "_generated")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "inspectord.conf.sample"), "w") as f:
        f.write(config.sample())
    rows = []
    with open(os.path.join(ROOT, "doc", "ironic-inspector-12.5.0-options.tsv"), newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            rows.append(row)
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 15 25 12 48",
        "",
        "   * - section",
        "     - option",
        "     - handling",
        "     - note",
    ]
    for row in rows:
        note = (row.get("note") or "").replace("*", r"\*").replace("`", "'") or "-"
        lines += [
            "   * - ``{}``".format(row["section"]),
            "     - ``{}``".format(row["option"]),
            "     - {}".format(row["handling"]),
            "     - {}".format(note),
        ]
    with open(os.path.join(out, "ironic-inspector-options.rst"), "w") as f:
        f.write("\n".join(lines) + "\n")


_generate()
