"""Writing run outputs so that a failed write (a full disk, a quota) never leaves a broken file.

Two kinds of file, one rule each:
- whole files (checkpoint, summary, PU weights, plots, trace meta) are written to a
  temporary file beside the target, synced, then renamed over it: a reader, a
  process killed mid-write or a full disk never leaves half a file, and the previous
  version survives. A failed write removes the temporary file.
- growing files (kpis.csv, the trace) are appended to in whole lines; a write that
  fails part-way is cut back, so the file ends with its last complete line.
Either failure raises `OutputWriteError`, which names the file and the cause. JSON is written
strict (`json_text`): never measured is `null`, not the bare NaN that is not JSON.
"""
from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, List, Optional, Union

import torch

_open = open  # the one place files are opened for writing; tests replace it to make writes fail part-way


class OutputWriteError(RuntimeError):
    """A run output could not be written; what was complete before is still complete."""

    def __init__(self, path: Path, cause: OSError):
        self.path, self.cause = Path(path), cause
        super().__init__(f"cannot write {self.path}: {describe(cause)}")


def describe(e: BaseException) -> str:
    """`[Errno 28] No space left on device: '...'` -> `No space left on device (ENOSPC)`."""
    if isinstance(e, OSError) and e.errno is not None:
        return f"{e.strerror or os.strerror(e.errno)} ({errno.errorcode.get(e.errno, e.errno)})"
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def json_safe(obj: Any) -> Any:
    """A copy with every non-finite float (NaN: never measured, inf) as None, in maps and lists too."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def json_text(obj: Any, indent: Optional[int] = None) -> str:
    """Strict JSON (RFC 8259): `null` where Python's json would write the bare NaN or Infinity that
    JSON.parse and most other readers refuse."""
    return json.dumps(json_safe(obj), indent=indent, allow_nan=False)


def _write_all(f: io.RawIOBase, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = f.write(view)
        view = view[n:]


def write_atomic(path: Path, data: Union[str, bytes]) -> None:
    """Write `data` to a temporary file beside `path` (named per process, so parallel writers do
    not share one), sync it, then rename it over `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    raw = data.encode() if isinstance(data, str) else data
    try:
        with _open(tmp, "wb", buffering=0) as f:
            _write_all(f, raw)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OutputWriteError(path, e) from None


def save_atomic(obj: object, path: Path) -> None:
    """`torch.save` through `write_atomic`: serialised in memory first, so only plain writes touch the disk."""
    render_atomic(path, lambda buf: torch.save(obj, buf))


def render_atomic(path: Path, render: Callable[[io.BytesIO], None]) -> None:
    """Let `render` write into memory (e.g. `figure.savefig`), then `write_atomic` the bytes."""
    buf = io.BytesIO()
    render(buf)
    write_atomic(path, buf.getvalue())


def csv_lines(rows: List[list], lineterminator: str = "\r\n") -> str:
    """Rows as CSV text, as `csv.writer` writes them (to append as whole lines)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator=lineterminator).writerows(rows)
    return buf.getvalue()


class AppendFile:
    """A file grown by whole lines. `append` writes and flushes them; if the write fails part-way
    the file is cut back to where it was, so it always ends with a complete line."""

    def __init__(self, path: Path, truncate: bool = False):
        self.path = Path(path)
        try:
            self._f = _open(self.path, "wb" if truncate else "ab", buffering=0)
        except OSError as e:
            raise OutputWriteError(self.path, e) from None

    def size(self) -> int:
        return os.fstat(self._f.fileno()).st_size

    def append(self, text: str) -> None:
        end = self.size()
        try:
            _write_all(self._f, text.encode())
        except OSError as e:
            os.ftruncate(self._f.fileno(), end)
            raise OutputWriteError(self.path, e) from None

    @property
    def closed(self) -> bool:
        return self._f.closed

    def close(self) -> None:
        self._f.close()
