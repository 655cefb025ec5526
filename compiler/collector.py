"""Python's cyclic garbage collector, paused while the compiler runs.

A compilation builds large object graphs that refer to each other in cycles (an op and
its bundle, a wire and its ops, a bundle's predecessors and successors: about 200,000
objects per lowering of the `medium` d128 block), and the variant search keeps several
lowerings alive at once.  With the collector on, CPython traverses that whole heap
again every time it grows by a quarter: about a third of that block's compile time
(docs/compiler.md, "Compile time").

`paused` (a decorator of the compiler's entry points) turns the collector off and
freezes (`gc.freeze`) the heap the caller already had, so no collection traverses it;
`checkpoint` (at the start of every lowering) collects what was made since the last
checkpoint -- the cycles of the lowerings dropped since -- and freezes the rest; on
leaving the outermost entry point the frozen objects go back to the collector, which
is restored as it was.  Garbage made after the last checkpoint is left to the
collector's next run.  (A caller's own `gc.freeze` is undone by that exit too.)
"""

from __future__ import annotations

import functools
import gc

_depth = 0
_was_enabled = False


def paused(fn):
    """Run ``fn`` with the collector paused (nested calls: the outermost decides)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        global _depth, _was_enabled
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
            gc.freeze()
        _depth += 1
        try:
            return fn(*args, **kwargs)
        finally:
            _depth -= 1
            if _depth == 0:
                gc.unfreeze()
                if _was_enabled:
                    gc.enable()
    return wrapper


def checkpoint() -> None:
    """Inside `paused`: collect the objects made since the last checkpoint, freeze the
    survivors.  Outside: nothing."""
    if _depth:
        gc.collect()
        gc.freeze()
