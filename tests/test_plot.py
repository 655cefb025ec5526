"""The schedule picture explains itself: legend entries for light vs solid shading, the
MXM rows' split (loads above, MVMs below) and a note on every row with no instruction."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest

from compiler import compile_block
from compiler.plot import plot_schedule, schedule_figure
from golden.block import make_block


@pytest.fixture(scope="module")
def compiled():
    # on small this block leaves the SXMs idle (tiny uses them for reductions)
    return compile_block(make_block(0, 8, 16, 2, 32), "small", effort="fast")


def test_picture_explains_shading_rows_and_empty_slices(compiled):
    fig = schedule_figure(compiled)
    try:
        ax = fig.axes[0]
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert "light: in flight" in legend and "solid: issue cycle" in legend
        labels = {t.get_text().split()[0]: t.get_text() for t in ax.get_yticklabels()}
        for s in compiled.cfg.slices:
            assert (s.kind == "MXM") == ("(LW above MVM)" in labels[s.name]), s.name
        # the slices the program gives no instruction (SXMs in this block)
        idle = [s.name for s in compiled.cfg.slices
                if not compiled.emitted.queues[s.name].issued]
        assert idle, "the test needs a program that leaves a slice idle"
        notes = [t for t in ax.texts if t.get_text() == "no instructions in this program"]
        ticks = dict(zip([t.get_text().split()[0] for t in ax.get_yticklabels()],
                         ax.get_yticks(), strict=True))
        assert sorted(t.get_position()[1] for t in notes) == sorted(ticks[s] for s in idle)
        caption = " ".join(t.get_text() for t in fig.texts)
        assert "Light bar" in caption and "solid mark" in caption and "empty row" in caption
    finally:
        plt.close(fig)


def test_png_written(compiled, tmp_path):
    p = plot_schedule(compiled, tmp_path / "s.png")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_slice_instruction_has_a_colour():
    """A program with an instruction the table lacked (TGET, with a transposer) could not
    be drawn: `--plot` raised KeyError."""
    from arch.isa import DEFS, ICU_DEFS
    from compiler.plot import KIND_COLOURS

    slice_mnemonics = {m for defs in DEFS.values() for m in defs} - set(ICU_DEFS)
    assert slice_mnemonics <= set(KIND_COLOURS), slice_mnemonics - set(KIND_COLOURS)
    assert len(set(KIND_COLOURS.values())) == len(KIND_COLOURS)


def test_transposer_program_is_drawn(tmp_path):
    cb = compile_block(make_block(0, 8, 16, 2, 32),
                       "tiny3", effort="fast")
    used = {ins.mnemonic for q in cb.emitted.queues.values() for _c, ins, _l in q.issued}
    assert {"TPUT", "TGET"} <= used, used
    fig = schedule_figure(cb)
    try:
        legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        assert "TPUT" in legend and "TGET" in legend
    finally:
        plt.close(fig)


def test_what_has_no_schedule_is_refused_by_name(tmp_path):
    """A compiled graph keeps no schedule: a TypeError naming it, not an AttributeError."""
    from types import SimpleNamespace

    with pytest.raises(TypeError, match=r"plot_schedule draws a compiled block.*a "
                                        r"SimpleNamespace has no emitted"):
        plot_schedule(SimpleNamespace(cfg=None), tmp_path / "x.png")
