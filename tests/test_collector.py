"""The garbage collector paused while compiling (`compiler.collector`): the caller's
collector state comes back whatever happens, and checkpoints free dropped cycles."""

import gc
import weakref

import pytest

from compiler.collector import checkpoint, paused


class _Node:
    """An object that takes part in a reference cycle (as an op and its bundle do)."""

    def __init__(self):
        self.me = self


@pytest.fixture(autouse=True)
def _collector_restored():
    enabled, threshold = gc.isenabled(), gc.get_threshold()
    yield
    assert gc.get_freeze_count() == 0
    gc.set_threshold(*threshold)
    (gc.enable if enabled else gc.disable)()


def test_paused_turns_the_collector_off_and_restores_it():
    seen = []

    @paused
    def work():
        seen.append(gc.isenabled())
        return 7

    gc.enable()
    assert work() == 7
    assert seen == [False] and gc.isenabled() and gc.get_freeze_count() == 0
    gc.disable()
    work()
    assert not gc.isenabled()  # a caller that had it off keeps it off


def test_paused_restores_the_collector_when_the_compile_raises():
    @paused
    def fails():
        raise ValueError("bad block")

    gc.enable()
    with pytest.raises(ValueError, match="bad block"):
        fails()
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_nested_entry_points_leave_it_to_the_outermost():
    inner_after = []

    @paused
    def inner():
        return gc.isenabled()

    @paused
    def outer():
        inner()
        inner_after.append(gc.isenabled())

    gc.enable()
    outer()
    assert inner_after == [False] and gc.isenabled()


def test_checkpoint_frees_the_cycles_dropped_since_the_last_one():
    @paused
    def work():
        kept, dropped = _Node(), _Node()
        ref_kept, ref_dropped = weakref.ref(kept), weakref.ref(dropped)
        del dropped
        assert ref_dropped() is not None  # a cycle: only the collector frees it
        checkpoint()
        assert ref_dropped() is None
        assert ref_kept() is kept  # (frozen, not freed)
        return ref_kept

    gc.enable()
    ref = work()
    gc.collect()  # unfrozen on exit: the collector frees it once nothing refers to it
    assert ref() is None


def test_checkpoint_outside_a_compile_does_nothing():
    gc.disable()
    n = _Node()
    ref = weakref.ref(n)
    del n
    checkpoint()
    assert ref() is not None and gc.get_freeze_count() == 0
    gc.collect()
    assert ref() is None
