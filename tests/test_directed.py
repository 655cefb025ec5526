"""The directed programs (tb/directed.py) on the machine model: each is accepted from any
power-up state, writes something that is compared, and hits every functional-coverage
bin it is there for (on every config where the bin exists)."""

import pytest

from arch.config import get_config
from tb.directed import DIRECTED
from tb.funcov import FunctionalCoverage


@pytest.mark.parametrize("config", ["tiny", "small"])
@pytest.mark.parametrize("name", sorted(DIRECTED))
def test_directed_program_hits_its_bins(config, name):
    cfg = get_config(config)
    build, targets = DIRECTED[name]
    case = build(cfg)  # raises if the model refuses it or it reads undefined state
    assert sum(len(a) for a in case.compare.values()) >= 1
    fc = FunctionalCoverage(cfg)
    assert fc.sample(case.program, case.image) is None
    defined = {b.name for b in fc.bins()}
    exist = [t for t in targets if t in defined]
    assert exist, f"none of {targets} is a bin on {config}"
    missed = [t for t in exist if not fc.hits[t]]
    print(f"{name} on {config}: {case.n_slice_instructions} slice instructions, hits "
          f"{', '.join(exist)}")
    assert not missed, f"{name} misses {missed}"
