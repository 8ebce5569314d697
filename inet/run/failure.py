"""`failed.json`: the mark a run directory gets when its run stops on an error, with the reason.

`inet report` lists such a run as failed with that reason instead of "crashed or still
running". The mark is tiny and written last, so it usually fits where a checkpoint did
not; if even it cannot be written, the runner's one-line message still names the cause.
A resumed run removes the mark when it starts.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

from .files import OutputWriteError, describe, json_text, write_atomic

FILENAME = "failed.json"


def mark_failed(run_dir: Path, error: BaseException, iteration: int) -> bool:
    """Write `run_dir/failed.json` (error type, one-line reason, iteration, time); False if it cannot be written."""
    record = {"error": type(error).__name__, "reason": describe(error), "iteration": iteration,
              "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    try:
        write_atomic(Path(run_dir) / FILENAME, json_text(record, indent=2))
    except OutputWriteError:
        return False
    return True


def load(run_dir: Path) -> Optional[dict]:
    """The failure mark of a run directory, or None."""
    path = Path(run_dir) / FILENAME
    return json.loads(path.read_text()) if path.is_file() else None


def clear(run_dir: Path) -> None:
    (Path(run_dir) / FILENAME).unlink(missing_ok=True)
