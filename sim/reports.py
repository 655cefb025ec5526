"""Where runs keep their reports: ``build/sim/<run>/``, one directory per run, never
overwritten, with ``build/sim/latest`` pointing at the newest.

``<run>`` is ``<UTC date>-<time>-<what>`` (e.g. ``20261204-093512-block-small-s16...``),
so a listing sorts by time.
"""

from __future__ import annotations

import os
import re
import time
from contextlib import contextmanager
from pathlib import Path

from .build import build_root


def sim_root() -> Path:
    return build_root() / "sim"


def new_run_dir(what: str) -> Path:
    """Create a fresh run directory and point ``latest`` at it."""
    root = sim_root()
    root.mkdir(parents=True, exist_ok=True)
    stem = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + \
        re.sub(r"[^A-Za-z0-9_.-]+", "_", what)[:80]
    for n in range(1000):
        d = root / (stem if n == 0 else f"{stem}-{n}")
        try:
            d.mkdir()
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover
        raise RuntimeError(f"cannot create a run directory under {root}")
    latest = root / "latest"
    _before[d] = os.readlink(latest) if latest.is_symlink() else None
    _point_latest(root, d.name)
    return d


#: run directory -> what ``latest`` pointed at before it (for `discard_run_dir`)
_before: dict[Path, str | None] = {}


def _point_latest(root: Path, name: str) -> None:
    tmp = root / f".latest.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(name)  # relative: the build tree can move
    os.replace(tmp, root / "latest")


@contextmanager
def run_dir_unless_refused(out_dir: Path | None, what: str):
    """``out_dir``, or a fresh run directory (`new_run_dir`) that a refusal inside the body
    (ValueError -- a CompileError too -- or FileNotFoundError: bad input, nothing ran)
    takes away again (`discard_run_dir`)."""
    if out_dir is not None:
        yield out_dir
        return
    d = new_run_dir(what)
    try:
        yield d
    except (ValueError, FileNotFoundError):
        discard_run_dir(d)
        raise


def discard_run_dir(d: Path) -> None:
    """Remove the run directory of a run refused before it started (bad input), and point
    ``latest`` back where it was (if it still points at ``d``)."""
    import shutil

    root = d.parent
    before = _before.pop(d, None)
    latest = root / "latest"
    if latest.is_symlink() and os.readlink(latest) == d.name:
        if before is not None:
            _point_latest(root, before)
        else:
            latest.unlink()
    shutil.rmtree(d, ignore_errors=True)
