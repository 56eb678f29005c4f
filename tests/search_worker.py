"""A search worker process for tests: joins a shared study and scores archs slowly (so it can be killed mid-run).

    python tests/search_worker.py STORAGE STUDY TRIALS SEED [MARKER [hang]]

MARKER: a file created when this worker starts scoring an architecture; with "hang" the worker then stops
inside that trial (so a test can kill it there, its architecture chosen and its heartbeat running).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from hwlat.search import FunctionMetric, SpaceCount, run_search
from hwlat.spaces import get_space

#: environment variables read by `slow_score` (set from the command line; other users of it leave them unset)
MARKER, HANG = "HWLAT_TEST_WORKER_MARKER", "HWLAT_TEST_WORKER_HANG"


def slow_score(arch: str) -> float:
    """Number of 3x3 convolutions, after a pause that stands for training or measuring."""
    if os.environ.get(MARKER):
        Path(os.environ[MARKER]).touch()
    time.sleep(600 if os.environ.get(HANG) else 0.05)
    return float(get_space("nb201").ops(arch).count("nor_conv_3x3"))


if __name__ == "__main__":
    storage, study, trials, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    if len(sys.argv) > 5:
        os.environ[MARKER] = sys.argv[5]
    if sys.argv[6:] == ["hang"]:
        os.environ[HANG] = "1"
    run_search("nb201", [FunctionMetric("score", slow_score), SpaceCount("nb201", "params")], trials=trials,
               seed=seed, storage=storage, study_name=study, heartbeat_s=1.0)
