"""Assembler, disassembler, program binary and CLI."""

from __future__ import annotations

import random
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from arch.asm import (
    AsmError,
    ProgramBuilder,
    Schedule,
    assemble,
    disassemble,
    format_instr,
    main,
    parse_instr,
)
from arch.config import PRESETS, get_config
from arch.isa import DEFS, Instr, IsaError, available, encode
from arch.isa_random import random_instr, random_program
from arch.program import HALT_WORD, Program, ProgramError

ROOT = Path(__file__).resolve().parents[1]
SEED = 1234

EXAMPLE = """\
# a comment line
.config tiny
.slice MEM_W0
    READ 0x10, s3.E      # trailing comment
    REPEAT 3, 1, 1
    HALT
.slice VXM
    NOP 4
    VXM.i32 s4.E:i8 = REQUANT(ADD(s0.E, r0), r1)
    VXM.u8 r5:i32 = OR(SHL(s5.W, 8), r5)
    VXM.i8 s1.W:sat = SRAR(MUL(s0.E, r1), 12)
    VXM.i16 s0.E = RELU(SEL(s0.W, s2.W, -128))
    VXM.i32 r3 = lane
    HALT
.slice MXM_W0
    MVM s1.W, 3, accum, emit=s0.E, lw=5@s0.W
    LWT 2, s0.W
    IW
    HALT
.slice SXM_E
    RSUM.u8 s2.W, s4.W:i32
    SHS.i16 -3, s0.E, s2.W
    PMAP 1, s0.E
    HALT
"""


def test_example_assembles_and_round_trips():
    prog = assemble(EXAMPLE)
    assert prog.cfg.name == "tiny"
    assert prog.words("MEM_W0") == [encode("READ", addr=16, out_s=3), encode(
        "REPEAT", n=3, d=1, stride_a=1), HALT_WORD]
    assert prog.words("MEM_E1") == [HALT_WORD]
    text = disassemble(prog)
    assert assemble(text) == prog
    assert disassemble(assemble(text)) == text


@pytest.mark.parametrize("name", list(PRESETS))
def test_random_programs_round_trip(name):
    seed = SEED + len(name)
    print(f"config {name} seed {seed}")
    rng = random.Random(seed)
    cfg = PRESETS[name]
    for _ in range(30 if name != "full" else 5):
        prog = random_program(cfg, rng)
        data = prog.to_bytes()
        text = disassemble(Program.from_bytes(data))
        prog2 = assemble(text, cfg, check=False)  # random words, not a runnable program
        assert prog2.to_bytes() == data
        assert disassemble(prog2) == text


def test_every_instruction_formats_and_parses():
    rng = random.Random(SEED)
    for cfg in (get_config("tiny"), get_config("medium"), get_config("tiny3")):
        for kind, defs in DEFS.items():
            if not cfg.slices_of(kind):  # C2C: only in configs with links
                continue
            for mn in defs:
                if not available(mn, cfg):  # TPUT/TGET: configs with transposers
                    continue
                for _ in range(25):
                    ins = random_instr(kind, cfg, rng, mn)
                    assert parse_instr(format_instr(ins), kind, cfg) == ins


def test_binary_header():
    prog = assemble(EXAMPLE)
    data = prog.to_bytes()
    magic, version, nq, h, name = struct.unpack_from("<4sHH16s16s", data)
    assert (magic, version, nq) == (b"TSPQ", 1, prog.cfg.n_positions)
    assert h.decode() == prog.cfg.stable_hash() and name.rstrip(b"\0") == b"tiny"
    counts = struct.unpack_from(f"<{nq}I", data, 40)
    assert list(counts) == [len(prog.words(s.name)) for s in prog.cfg.slices]
    assert len(data) == 40 + 4 * nq + 8 * sum(counts)
    assert Program.from_bytes(data) == prog
    with pytest.raises(ProgramError, match="not for 'small'"):
        Program.from_bytes(data, get_config("small"))
    with pytest.raises(ProgramError, match="magic"):
        Program.from_bytes(b"XXXX" + data[4:])
    with pytest.raises(ProgramError, match="bytes"):
        Program.from_bytes(data[:-1])
    with pytest.raises(ProgramError, match=r"corrupt header: the config hash .* is not ASCII"):
        Program.from_bytes(data[:8] + b"\xff" * 16 + data[24:])
    with pytest.raises(ProgramError, match=r"corrupt header: the config name .* is not ASCII"):
        Program.from_bytes(data[:24] + b"\xfe" * 16 + data[40:])
    custom = get_config("tiny").replace(name="mine", mem_depth=64)
    cdata = Program(custom).to_bytes()
    with pytest.raises(ProgramError, match="not a preset"):
        Program.from_bytes(cdata)
    assert Program.from_bytes(cdata, custom).cfg is custom


def test_program_checks():
    cfg = get_config("tiny")
    with pytest.raises(ProgramError, match="no slice"):
        Program(cfg, {"MEM_W7": [HALT_WORD]})
    with pytest.raises(ProgramError, match="imem_depth"):
        Program(cfg, {"VXM": [HALT_WORD] * (cfg.imem_depth + 1)})


def _err(text, cfg=None):
    with pytest.raises(AsmError) as ei:
        assemble(text, cfg, "prog.s")
    return str(ei.value)


@pytest.mark.parametrize("text, expected", [
    (".slice MEM_W0\n  FROB 1\n", ["prog.s:2", "unknown mnemonic 'FROB'", "READ, WRITE"]),
    (".slice MEM_W0\n\n  READ 1, q3.E\n", ["prog.s:3", "bad operand 'q3.E'", "like s3.E"]),
    (".slice MEM_W0\n  READ 1\n",
     ["prog.s:2", "READ expects operands 'addr, out:sN.D, [w=ADDR@sN.D]'"]),
    (".slice MEM_W0\n  READ 5000, s1.E\n", ["prog.s:2", "addr=5000 out of range [0, 1023]"]),
    (".slice MEM_W0\n  READ 1, s16.E\n", ["out_s=16 out of range [0, 15]"]),
    (".slice MEM_X9\n", ["prog.s:1", "unknown slice 'MEM_X9'", "MEM_W0, VXM, MEM_E0"]),
    (".slice VXM\n  READ 1, s1.E\n", ["prog.s:2", "READ is a MEM instruction",
                                      "VXM instructions are"]),
    ("  HALT\n", ["prog.s:1", "before the first '.slice"]),
    (".slice VXM\n.slice VXM\n", ["prog.s:2", "duplicate .slice VXM"]),
    (".slice VXM\n  VXM.i8 s0.E = FOO(s1.E)\n", ["unknown op 'FOO'"]),
    (".slice VXM\n  VXM.i8 s0.E = ADD(s1.E)\n", ["ADD takes 2 operand(s), got 1"]),
    (".slice VXM\n  VXM.i8 s0.E = ADD(s1.E, 3) junk\n", ["unexpected 'junk'"]),
    (".slice VXM\n  VXM.i8 s0.E = MAX(ADD(s1.E, 1), 2)\n", ["share one imm"]),
    (".slice VXM\n  VXM.i8 s0.E = ADD(s1.E, 99999)\n", ["imm=99999 out of range"]),
    (".slice VXM\n  VXM.i8 r16 = s1.E\n", ["register r16 out of range"]),
    (".slice MXM_W0\n  MVM s0.W, 3, frob\n", ["unexpected operand 'frob'"]),
    (".slice MXM_W0\n  MVM s0.W, 3, lw=5\n", ["expected lw=ROW@sN.D"]),
    (".slice MEM_W0\n  READ.i8 1, s1.E\n", ["takes no type suffix"]),
    (".slice SXM_W\n  SHS.i64 1, s1.E, s2.E\n", ["bad type suffix 'i64'"]),
    (".slice SXM_W\n  SHS 16, s1.E, s2.E\n", ["n=16 out of range [-15, 15]"]),
    (".frob 1\n", ["unknown directive"]),
    (".config huge\n", ["unknown config 'huge'"]),
    (".config tiny\n", ["does not match the requested config 'small'"]),
])
def test_error_messages(text, expected):
    msg = _err(text, "small" if text.startswith(".config tiny") else None)
    for part in expected:
        assert part in msg, msg


def test_numbers_with_leading_zeros_and_tabs():
    """012 is decimal 12 (it was a ValueError from int(.., 0) without file and line), and a
    tab separates a mnemonic or a directive from its operands as a space does."""
    p = assemble(".config\ttiny\n.slice\tMEM_W0\n\tREAD\t012, s1.E\n    REPEAT 3, 1, 01\n"
                 ".slice VXM\n    VXM.i8 s0.E = ADD(s1.E, 010)\n")
    text = disassemble(p)
    assert "READ 12, s1.E" in text and "REPEAT 3, 1, 1" in text and "ADD(s1.E, 10)" in text
    assert "bad operand '0x'" in _err(".slice MEM_W0\n  READ 0x, s1.E\n")


def test_encode_refuses_values_that_are_not_ints():
    for v in (2.7, "3", True):
        with pytest.raises(IsaError, match=rf"READ\.addr: expected an int, got "
                                           rf"{type(v).__name__}"):
            encode("READ", addr=v, out_s=2, out_d="E")


def test_schedule_refuses_negative_cycles():
    with pytest.raises(AsmError, match=r"MEM_W0: 'READ 0, s1\.E': cycle must be an int >= 0, "
                                       r"got -1"):
        Schedule("tiny").at("MEM_W0", -1, "READ 0, s1.E")
    with pytest.raises(AsmError, match=r"d must be an int >= 1, got 0"):
        Schedule("tiny").at("MEM_W0", 0, "READ 0, s1.E", n=2, d=0)


def test_builder_api():
    cfg = get_config("tiny")
    b = ProgramBuilder(cfg)
    b.add("MEM_W0", "READ 1, s2.E  # comment", Instr.make("REPEAT", n=2, d=1, stride_a=1),
          encode("HALT"))
    prog = b.build()
    assert prog.words("MEM_W0") == assemble(
        ".slice MEM_W0\nREAD 1, s2.E\nREPEAT 2, 1, 1\nHALT\n", cfg).words("MEM_W0")
    with pytest.raises(AsmError, match=r"VXM\[0\]: READ is a MEM instruction"):
        b.add("VXM", "READ 1, s2.E")
    with pytest.raises(AsmError, match="no slice"):
        b.add("MEM_W9", "HALT")
    with pytest.raises(AsmError, match="out of range"):
        b.add("MEM_W0", Instr.make("READ", addr=100000))


def test_cli_round_trip(tmp_path, capsys):
    src = tmp_path / "p.s"
    src.write_text(EXAMPLE)
    assert main([str(src)]) == 0
    binf = tmp_path / "p.bin"
    assert binf.exists()
    assert main(["-d", str(binf)]) == 0
    text = capsys.readouterr().out
    src2 = tmp_path / "q.s"
    src2.write_text(text)
    assert main([str(src2), "-o", str(tmp_path / "q.bin"), "--config", "tiny"]) == 0
    assert (tmp_path / "q.bin").read_bytes() == binf.read_bytes()


def test_cli_error_exits_2_without_traceback(tmp_path):
    bad = tmp_path / "bad.s"
    bad.write_text(".slice VXM\n  HALT\n  BOGUS 3\n")
    r = subprocess.run([sys.executable, "-m", "arch.asm", str(bad)], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert f"error: {bad}:3: unknown mnemonic 'BOGUS'" in r.stderr
    assert "Traceback" not in r.stderr


def test_custom_config_program_text_round_trip():
    custom = get_config("tiny").replace(name="mine", mem_slices_per_hemisphere=3)
    prog = assemble(".slice MEM_W2\nREAD 3, s1.E\nHALT\n", custom)
    text = disassemble(prog)
    assert ".config mine" in text and ".slice MEM_W2" in text
    assert assemble(text, custom) == prog
    full = disassemble(prog, all_slices=True)
    assert full.count(".slice") == custom.n_positions
    assert assemble(full, custom) == prog


def test_schedule_places_instructions_on_cycles():
    import numpy as np

    from arch.asm import AsmError, Schedule
    from golden.machine import Machine

    cfg = get_config("tiny")
    sch = Schedule(cfg)
    sch.at("MEM_W1", 3, "READ 0, s0.E", n=2, d=2, stride=1)  # cycles 3, 5, 7
    sch.at("MEM_W1", 8, "READ 9, s1.E")
    sch.at("MEM_W0", 5, "WRITE s0.E, 4", n=2, d=2, stride=1)
    m = Machine(cfg)
    for a in range(10):
        m.write_mem("MEM_W1", a, np.full(16, a, np.uint8))
    m.load_program(sch.program())
    tr = m.run(trace=True).trace
    issued = sorted((tc.cycle, sl) for tc in tr for sl, _, _, text in tc.issued
                    if text.split()[0] in ("READ", "WRITE"))
    assert issued == [(3, "MEM_W1"), (5, "MEM_W0"), (5, "MEM_W1"), (7, "MEM_W0"),
                      (7, "MEM_W1"), (8, "MEM_W1"), (9, "MEM_W0")]
    assert [int(m.read_mem("MEM_W0", 4 + k)[0]) for k in range(3)] == [0, 1, 2]
    sch.at("MEM_W1", 6, "READ 1, s2.E")  # inside the REPEAT block of cycle 3
    with pytest.raises(AsmError, match=r"MEM_W1: 'READ 1, s2.E' at cycle 6 overlaps"):
        sch.text()
    with pytest.raises(AsmError, match="unknown slice 'MEM_W7'"):
        Schedule(cfg).at("MEM_W7", 0, "HALT")


def test_queue_depth_per_kind_in_program_and_assembler():
    """A queue holds its own kind's depth: on tiny3 the VXM 2048 words, a MEM queue 512;
    one word more is refused with the field that sets that depth."""
    cfg = get_config("tiny3")
    Program(cfg, {"VXM": [HALT_WORD] * 2048, "MXM_W0": [HALT_WORD] * 1024})
    with pytest.raises(ProgramError, match=r"^VXM: 2049 instructions exceed vxm_imem_depth=2048$"):
        Program(cfg, {"VXM": [HALT_WORD] * 2049})
    with pytest.raises(ProgramError, match=r"^MEM_W0: 513 instructions exceed imem_depth=512$"):
        Program(cfg, {"MEM_W0": [HALT_WORD] * 513})
    src = ".config tiny3\n.slice VXM\n" + "  NOP 1\n" * 1000 + ".slice MEM_W0\n" + "  NOP 1\n" * 513
    assemble(src.rsplit("  NOP 1\n", 1)[0])  # 1000 VXM words and 512 MEM words fit
    with pytest.raises(AsmError, match=r"MEM_W0: instruction 512 does not fit: the queue "
                                        r"holds imem_depth=512 words"):
        assemble(src)


def test_read_with_a_write_is_one_word_on_configs_with_mem_read_write():
    """``READ addr, sN.D, w=ADDR@sM.D``: assembled, disassembled and re-assembled to the
    same word; refused, naming the parameter, on a config without mem_read_write; its write
    fields must be zero without w=."""
    from arch.isa import IsaError, decode, validate

    src = ".config tiny3\n.slice MEM_W0\n    READ 5, s0.E, w=261@s3.W\n    READ 6, s1.E\n"
    prog = assemble(src)
    words = prog.words("MEM_W0")
    again = assemble(disassemble(prog))
    assert again.words("MEM_W0") == words
    f = decode("MEM", words[0]).fields
    got = (f["addr"], f["out_s"], f["wr"], f["waddr"], f["in_s"], f["in_d"])
    assert got == (5, 0, 1, 261, 3, 1)
    assert decode("MEM", words[1]).fields["wr"] == 0
    with pytest.raises(AsmError, match=r"mem_read_write = 1 \(config 'tiny' has 0\)"):
        assemble(src.replace("tiny3", "tiny"))
    with pytest.raises(IsaError, match="waddr/in fields must be 0 without a write"):
        validate(Instr("READ", {"addr": 1, "out_s": 0, "out_d": 0, "wr": 0, "waddr": 9,
                                "in_s": 0, "in_d": 0}), "MEM", get_config("tiny3"))


def test_transposer_words_assemble_only_with_transposers():
    """TPUT/TGET assemble and round-trip on a config with SXM transposers; elsewhere the
    assembler refuses them naming the parameter; rows and columns are range-checked."""
    cfg = get_config("tiny3")  # 32-row transposers, VL 48
    for text in ("TPUT 31, s2.E", "TGET 47, 32, s0.W", "TGET 0, 1, s7.E"):
        ins = parse_instr(text, "SXM", cfg)
        assert format_instr(ins) == text and parse_instr(format_instr(ins), "SXM", cfg) == ins
    with pytest.raises(AsmError, match="sxm_transpose_rows > 0"):
        assemble(".slice SXM_W\n  TGET 3, 16, s1.E\n", get_config("tiny"))
    for bad, what in (("TPUT 32, s2.E", "row=32"), ("TGET 48, 32, s0.W", "col=48"),
                      ("TGET 3, 0, s0.W", "rows=0"), ("TGET 3, 33, s0.W", "rows=33")):
        with pytest.raises((AsmError, IsaError), match=what):
            parse_instr(bad, "SXM", cfg)


def test_transposer_rows_are_validated():
    for r, ok in ((0, True), (16, True), (48, True), (24, False), (64, False)):
        if ok:
            get_config("tiny3").replace(sxm_transpose_rows=r)
        else:
            with pytest.raises(ValueError, match="sxm_transpose_rows must be 0"):
                get_config("tiny3").replace(sxm_transpose_rows=r)
