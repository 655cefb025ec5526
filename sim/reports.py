"""Where runs keep their reports: ``build/sim/<run>/``, one directory per run, never
overwritten, with ``build/sim/latest`` pointing at the newest.

``<run>`` is ``<UTC date>-<time>-<what>`` (e.g. ``20261204-093512-block-small-s16...``),
so a listing sorts by time.
"""

from __future__ import annotations

import os
import re
import time
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
    tmp = root / f".latest.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(d.name)  # relative: the build tree can move
    os.replace(tmp, root / "latest")
    return d
