"""Memory tracing of a benchmarked inspectord (``bench.growth --tracemalloc``).

On ``PYTHONPATH`` of the traced process only.  With
``INSPECTORD_BENCH_TRACEMALLOC`` naming a directory, tracing starts before
anything is imported, and every ``SIGUSR2`` writes a snapshot there
(``snapshot-<n>.tracemalloc``, numbered from 0) for the benchmark to compare.
"""

import os

_directory = os.environ.get("INSPECTORD_BENCH_TRACEMALLOC")
if _directory:
    import itertools
    import signal
    import tracemalloc

    tracemalloc.start(int(os.environ.get("INSPECTORD_BENCH_TRACEMALLOC_FRAMES", "1")))
    _numbers = itertools.count()

    def _dump(signum, frame):
        path = os.path.join(_directory, "snapshot-{}.tracemalloc".format(next(_numbers)))
        tracemalloc.take_snapshot().dump(path + ".part")
        os.rename(path + ".part", path)

    signal.signal(signal.SIGUSR2, _dump)
