"""Log observers for ``twistd --logger``.

``twistd --logger=inspectord.logs.json_to_stdout`` writes one JSON event per
line to standard output, which systemd hands to the journal.
"""

import sys

from twisted.logger import jsonFileLogObserver


def json_to_stdout():
    return jsonFileLogObserver(sys.stdout)
