"""Wall-clock marks of a trial's phases (start-up, epochs, evaluation), for the overhead benchmark.

``mark(phase)`` appends one JSON line to the file named by ``$STUDY_TIMELINE`` and does nothing
when the variable is unset. Every process of a local Ray cluster inherits the variable, so the
sweep driver, the trial function and the Train workers write to one file, ordered by time.
"""

from __future__ import annotations

import json
import os
import time

TIMELINE_VARIABLE = "STUDY_TIMELINE"


def mark(phase: str, **fields: object) -> None:
    path = os.environ.get(TIMELINE_VARIABLE)
    if not path:
        return
    line = json.dumps({"phase": phase, "time": time.time(), "pid": os.getpid(), **fields})
    with open(path, "a") as timeline:
        timeline.write(line + "\n")


def read(path: str | os.PathLike) -> list[dict]:
    with open(path) as timeline:
        return sorted(
            (json.loads(line) for line in timeline if line.strip()), key=lambda entry: entry["time"]
        )
