"""The ISA tables: layouts, encode/decode, validation, latencies, generated docs."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from arch import isa
from arch.config import PRESETS, get_config
from arch.isa import (
    ALL_DEFS,
    DEFS,
    OPCODES,
    SEL_IMM,
    SEL_NONE,
    Instr,
    IsaError,
    decode,
    encode,
    latency,
    layout,
    validate,
)
from arch.isa_doc import render_isa_doc
from arch.isa_random import random_instr

ROOT = Path(__file__).resolve().parents[1]
SEED = 20240601


def test_docs_isa_md_is_current():
    doc = (ROOT / "docs" / "isa.md").read_text()
    assert doc == render_isa_doc(), "docs/isa.md is stale: python -m arch.isa --doc > docs/isa.md"


@pytest.mark.parametrize("d", ALL_DEFS, ids=lambda d: d.mnemonic)
def test_layout_fields_disjoint_and_in_word(d):
    lay = layout("MEM" if d.kind == "ICU" else d.kind, d.mnemonic)
    assert lay[0] == ("opcode", 0, 6, False)
    used = 0
    for name, off, width, signed in lay:
        assert isinstance(signed, bool)
        mask = ((1 << width) - 1) << off
        assert off + width <= 64, name
        assert not used & mask, f"{d.mnemonic}.{name} overlaps"
        used |= mask
    assert used | d.reserved_mask == isa.WORD_MASK


def test_opcode_spaces():
    for kind in isa.SLICE_KINDS:
        ops = OPCODES[kind]
        assert len(set(ops.values())) == len(ops)
        for m in ("NOP", "REPEAT", "SYNC", "NOTIFY", "HALT"):
            assert ops[m] == OPCODES["MEM"][m] < 8
        assert all(v >= 8 for m, v in ops.items() if m not in isa.ICU_DEFS)
        assert 0 not in ops.values()


def test_field_widths_cover_the_largest_config():
    full = PRESETS["full"].replace(sxm_transpose_rows=320)  # every optional unit at its largest
    for d in ALL_DEFS:
        for f in d.fields:
            lo, hi = f.bounds(full)
            f.encode(lo)
            f.encode(hi)  # raises IsaError if the field is too narrow


def test_encode_decode_round_trip_random():
    rng = random.Random(SEED)
    print("seed", SEED)
    for cfg in PRESETS.values():
        for kind in isa.SLICE_KINDS:
            if not cfg.slices_of(kind):  # C2C: only in configs with links
                continue
            for d in DEFS[kind].values():
                if not isa.available(d.mnemonic, cfg):  # (TPUT/TGET: transposers only)
                    continue
                for _ in range(20):
                    ins = random_instr(kind, cfg, rng, d.mnemonic)
                    w = ins.encode()
                    assert 0 <= w < 2**64 and w & 63 == d.opcode
                    assert decode(kind, w) == ins


def test_encode_known_words():
    assert encode("HALT") == 5
    assert encode("NOP", n=3) == 1 | 3 << 6
    w = encode("READ", addr=12, out_s=3, out_d="W")
    assert w == 8 | 12 << 6 | 3 << 19 | 1 << 24
    assert decode("MEM", w).fields == {"addr": 12, "out_s": 3, "out_d": 1, "wr": 0,
                                       "waddr": 0, "in_s": 0, "in_d": 0}
    r = encode("REPEAT", n=2, d=1, stride_a=-1)
    assert decode("SXM", r)["stride_a"] == -1


def test_decode_rejects_illegal_words():
    with pytest.raises(IsaError, match="illegal MEM opcode 0"):
        decode("MEM", 0)
    with pytest.raises(IsaError, match="illegal VXM opcode 9"):
        decode("VXM", 9)
    with pytest.raises(IsaError, match="reserved bits"):
        decode("MEM", encode("HALT") | 1 << 40)
    with pytest.raises(IsaError, match="no field"):
        Instr("READ", {"bogus": 1})


def test_validate_ranges_and_kinds():
    tiny, small = get_config("tiny"), get_config("small")
    ok = Instr.make("READ", addr=511, out_s=7)
    validate(ok, "MEM", tiny)
    with pytest.raises(IsaError, match=r"addr=512 out of range \[0, 511\]"):
        validate(ok.replace(addr=512), "MEM", tiny)
    validate(ok.replace(addr=1023, out_s=15), "MEM", small)
    with pytest.raises(IsaError, match="not a VXM instruction"):
        validate(ok, "VXM", tiny)
    mvm = Instr.make("MVM", x_s=0, emit=1, out_s=5)
    with pytest.raises(IsaError, match=r"s5\.\.s8"):
        validate(mvm, "MXM", tiny)
    with pytest.raises(IsaError, match="out fields must be 0"):
        validate(Instr.make("MVM", out_s=1), "MXM", tiny)


def _vxm(**f):
    base = {"type": 2, "otype": 2, "op1": 0, "op2": 0, "a": 0, "b": SEL_NONE, "c": SEL_NONE,
            "d": 4}
    return Instr("VXM", {**base, **f})


@pytest.mark.parametrize("fields, msg", [
    ({"op1": 25, "b": 1, "c": 2, "op2": 1}, "op2 must be unary"),
    ({"op2": 25, "c": 1}, "stage-1 op"),
    ({"op1": 24, "b": 1}, "must be a register"),
    ({"op1": 24, "b": 64 + 14}, "K <= 13"),
    ({"op1": 1}, "operand b missing"),
    ({"b": 1}, "operand b given but unused"),
    ({"imm": 5}, "imm must be 0"),
    ({"d": SEL_IMM}, "destination"),
    ({"a": 100}, "selector 100"),
    ({"a": 6}, r"s6\.\.s9"),
])
def test_validate_vxm_rules(fields, msg):
    with pytest.raises(IsaError, match=msg):
        validate(_vxm(**fields), "VXM", get_config("tiny"))


def test_latencies_are_functions_of_superlanes():
    for cfg in PRESETS.values():
        s = cfg.superlanes
        assert latency("READ", cfg) == latency("WRITE", cfg) == 1
        assert latency("VXM", cfg) == 3
        assert latency("MVM", cfg) == 2 * s + 2 >= s + 1
        assert latency("LWT", cfg) == 2 * s - 1
        assert latency("SHV", cfg) == latency("PERM", cfg) == 2 * s
        assert latency("RSUM", cfg) == 2 * s + 1
        assert latency("SHS", cfg) == 2
    with pytest.raises(IsaError):
        latency("NOP", get_config("tiny"))


def test_stride_fields():
    assert isa.stride_fields(DEFS["MEM"]["READ"]) == (("addr",), ("waddr",))
    assert isa.stride_fields(DEFS["MXM"]["MVM"]) == (("acc",), ("row",))
    assert isa.stride_fields(DEFS["VXM"]["VXM"]) == (("imm",), ())


def test_isa_cli_prints_doc(capsys):
    assert isa.main(["--doc"]) == 0
    assert capsys.readouterr().out == render_isa_doc()


def test_layouts_build_amaranth_struct_layouts():
    """What the RTL decoders do: a StructLayout per instruction, reserved bits as padding."""
    from amaranth import signed
    from amaranth.lib import data

    for kind in isa.SLICE_KINDS:
        for mn in DEFS[kind]:
            members, pos = {}, 0
            for name, off, width, is_signed in sorted(layout(kind, mn), key=lambda f: f[1]):
                if off > pos:
                    members[f"_rsvd{pos}"] = off - pos
                members[name] = signed(width) if is_signed else width
                pos = off + width
            if pos < 64:
                members[f"_rsvd{pos}"] = 64 - pos
            lay = data.StructLayout(members)
            assert lay.size == 64
            assert lay["opcode"].offset == 0 and lay["opcode"].width == 6
