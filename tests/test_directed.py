"""The directed programs (tb/directed.py) on the machine model: each is accepted from any
power-up state, writes something that is compared, and hits every functional-coverage
bin it is there for (on every config where the bin exists)."""

import pytest

from arch.config import get_config
from tb.directed import DIRECTED
from tb.funcov import FunctionalCoverage


@pytest.mark.parametrize("config", ["tiny", "small", "tiny3"])
@pytest.mark.parametrize("name", sorted(DIRECTED))
def test_directed_program_hits_its_bins(config, name):
    cfg = get_config(config)
    build, targets = DIRECTED[name]
    case = build(cfg)  # raises if the model refuses it or it reads undefined state
    if case is None:  # a program of optional hardware the config lacks: none of its bins
        defined = {b.name for b in FunctionalCoverage(cfg).bins()}
        assert name == "sxm_transpose" and not cfg.sxm_transpose_rows
        assert not [t for t in targets if t in defined]
        return
    assert sum(len(a) for a in case.compare.values()) >= 1
    fc = FunctionalCoverage(cfg)
    assert fc.sample(case.program, case.image) is None
    defined = {b.name for b in fc.bins()}
    exist = [t for t in targets if t in defined]
    if (name == "vxm_groups_pass" and cfg.vxm_groups == 1) or (
            name == "mem_read_write" and not cfg.mem_read_write):  # bins of other configs
        assert not exist
        return
    assert exist, f"none of {targets} is a bin on {config}"
    missed = [t for t in exist if not fc.hits[t]]
    print(f"{name} on {config}: {case.n_slice_instructions} slice instructions, hits "
          f"{', '.join(exist)}")
    assert not missed, f"{name} misses {missed}"


def _run(case):
    """The case's program on the machine model from its SRAM image."""
    from golden.machine import Machine
    from tb.fuzz import load_case

    m = Machine(case.cfg)
    load_case(m, case)
    m.run()
    return m


@pytest.mark.parametrize("config", ["tiny", "tiny3", "small:vxm_groups=4"])
def test_vxm_groups_pass_values_on_the_streams_with_private_registers(config):
    """Through every group and back, each adding its own r0 (10, 20, ...): the result is
    the input plus the sum, in both directions (numpy, not the model's arithmetic)."""
    import numpy as np

    from tb.directed import vxm_groups_pass

    cfg = get_config(config)
    case = vxm_groups_pass(cfg)
    m = _run(case)
    add = 10 * cfg.vxm_groups * (cfg.vxm_groups + 1) // 2
    for src, dst in (("MEM_W0", "MEM_E0"), ("MEM_E0", "MEM_W0")):
        want = (case.image[src][0].astype(np.int64) + add) % 256
        assert np.array_equal(m.mem[dst][1], want.astype(np.uint8)), (src, dst)


@pytest.mark.parametrize("config", ["tiny", "tiny3"])
def test_mem_read_write_words_read_the_old_value_and_write(config):
    """READ ..., w= (tiny3) and the same reads and writes one per cycle (tiny) end the same:
    the old vector read where the word writes, the written ones read back (numpy)."""
    import numpy as np

    from tb.directed import mem_read_write

    cfg = get_config(config)
    case = mem_read_write(cfg)
    from arch.isa import decode

    reads = [decode("MEM", w) for w in case.program.words("MEM_W0")]
    merged = [i for i in reads if i.mnemonic == "READ" and i.fields["wr"]]
    assert len(merged) == (2 if cfg.mem_read_write else 0)
    m = _run(case)
    img, e0 = case.image, m.mem["MEM_E0"]
    old = img["MEM_W0"][5]
    assert np.array_equal(e0[1], old) and np.array_equal(e0[2], old)
    assert np.array_equal(e0[3], img["MEM_W1"][3]) and np.array_equal(e0[4], img["MEM_W1"][2])


def test_the_write_of_a_read_write_word_counts_as_a_write():
    """Coverage: a READ ..., w= word's write read back in the first cycle after it lands is
    the WRITE>READ bin (it once showed up as a READ>READ bin that does not exist)."""
    from tb.directed import mem_read_write

    cfg = get_config("tiny3")
    case = mem_read_write(cfg)
    fc = FunctionalCoverage(cfg)
    assert fc.sample(case.program, case.image) is None
    assert fc.hits["mem.raw_earliest.WRITE>READ"] and not fc.unexpected


@pytest.mark.parametrize("config", ["tiny3", "medium:sxm_transpose_rows=64",
                                    "small:sxm_transpose_rows=16"])
def test_sxm_transpose_moves_columns_to_rows(config):
    """The transposer directed program on the model: column c read back is the image's
    rows' byte c in the row order the TPUTs gave (decoded from the program's words), zeros
    beyond the rows asked for; a TGET in the cycle after a row is written again still sees
    the old row, the next one the new (numpy on the SRAM image, not the model's state)."""
    import numpy as np

    from arch.isa import decode
    from tb.directed import _mems, sxm_transpose

    cfg = get_config(config)
    case = sxm_transpose(cfg)
    assert sxm_transpose(get_config("tiny")) is None  # no transposer: no program
    m = _run(case)
    R, vl, D = cfg.sxm_transpose_rows, cfg.vector_length, cfg.mem_depth
    for side in "WE":
        mem, m2 = _mems(cfg, side)[-1], _mems(cfg, side)[0]
        words = [decode("SXM", w) for w in case.program.words(f"SXM_{side}")]
        rows = [i["row"] for i in words if i.mnemonic == "TPUT"]  # address a -> rows[a]
        assert len(rows) == R + 1 and sorted(rows[:R]) == list(range(R))
        T = np.zeros((R, vl), np.uint8)
        for a, r in enumerate(rows[:R]):
            T[r] = case.image[mem][a]
        out = m.mem[mem][D:D + vl + 4]
        assert np.array_equal(out[:vl].T[:R], T)
        assert not out[:vl].T[R:].any()
        # column 3, the TGETs one and two cycles after row rows[R] is written again
        assert np.array_equal(out[vl][:R], T[:, 3])
        T[rows[R]] = case.image[m2][R]
        assert np.array_equal(out[vl + 1][:R], T[:, 3])
        assert np.array_equal(out[vl + 2], np.pad(T[:max(1, R // 2), vl - 1],
                                                  (0, vl - max(1, R // 2))))
        assert out[vl + 3][0] == T[0, 0] and not out[vl + 3][1:].any()
