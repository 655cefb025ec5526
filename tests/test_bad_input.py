# amaranth: UnusedElaboratable=no
"""Bad input, end to end.

Every user-facing entry point (the CLIs ``python -m arch.asm``, ``python -m sim``,
``python -m compiler``, ``python -m golden``, and the public Python APIs) refuses malformed
input with an error that names what is wrong and where -- file and line, slice,
instruction and cycle, parameter and allowed range -- and never with a traceback from deep
inside or a silently wrong result.  The table ``## Bad input`` in docs/verification.md
lists each case with a real message.

No test here builds anything: ``python -m sim`` is run with ``sim.build``'s
``build_sim``/``generate_verilog`` replaced by a guard that exits 99, so a bad block that
slipped past validation would show up as a failure, not as a Verilator build.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from arch.asm import AsmError, assemble
from arch.config import PRESETS, TspConfig, get_config
from arch.isa import IsaError, encode
from arch.program import Program, ProgramError
from compiler import CompileError, compile_block
from golden.block import make_block, quantize_block, random_float_params
from golden.machine import Machine, MachineError
from golden.quant import requantize

ROOT = Path(__file__).resolve().parents[1]
TINY, SMALL = get_config("tiny"), get_config("small")
HALT = encode("HALT")


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=full_env)


def assert_refused(r: subprocess.CompletedProcess, rc: int, *fragments: str) -> str:
    """Exit status ``rc``, no traceback, every fragment in stderr; returns stderr."""
    out = r.stdout + r.stderr
    assert "Traceback" not in out, out
    assert r.returncode == rc, (r.returncode, out)
    for f in fragments:
        assert f in r.stderr, (f, r.stderr)
    return r.stderr


# ============================================================================ 1. assembler
ASM_CASES = {
    # name: (source, line of the error, fragments of the message)
    "unknown mnemonic": (".slice MEM_W0\n  READ 1, s2.E\n  FROB 1, 2\n  HALT\n", 3,
                         ["unknown mnemonic 'FROB'", "MEM instructions are NOP, REPEAT",
                          "READ, WRITE, GATHER, SCATTER"]),
    "bad integer operand": (".slice MEM_W0\n  READ x1, s2.E\n", 2,
                            ["bad operand 'x1': expected an integer addr"]),
    "bad stream operand": (".slice MEM_W0\n  READ 1, q2.E\n", 2,
                           ["bad operand 'q2.E': expected a stream out like s3.E or s3.W"]),
    "missing operand": (".slice MEM_W0\n  READ 1\n", 2,
                        ["READ expects operands 'addr, out:sN.D, [w=ADDR@sN.D]', got 1 "
                         "positional"]),
    "address out of range": (".config tiny\n.slice MEM_W0\n  READ 512, s2.E\n", 3,
                             ["READ: addr=512 out of range [0, 511]"]),
    "stream out of range": (".config tiny\n.slice MEM_W0\n  READ 1, s8.E\n", 3,
                            ["READ: out_s=8 out of range [0, 7]"]),
    "VXM immediate out of range": (".slice VXM\n  VXM.i32 s0.E = ADD(s1.E, 99999)\n", 2,
                                   ["VXM: imm=99999 out of range [-16384, 16383]"]),
    "unknown VXM op": (".slice VXM\n  VXM.i8 s0.E = FOO(s1.E, s2.E)\n", 2,
                       ["VXM: unknown op 'FOO'; ops are PASS, ADD"]),
    "instruction on the wrong slice": (".slice VXM\n  READ 1, s2.E\n", 2,
                                       ["READ is a MEM instruction, not allowed on a VXM slice"]),
    "REPEAT stride out of range": (".config tiny\n.slice MEM_W0\n  READ 509, s2.E\n"
                                   "  REPEAT 5, 1, 1\n", 4,
                                   ["REPEAT 5: stride_a=1 walks READ addr from 509 out of "
                                    "range [0, 511] at repetition 3 (addr=512); at most 2 "
                                    "repetitions fit"]),
    "REPEAT after an ICU instruction": (".slice VXM\n  NOP 2\n  REPEAT 1, 1\n", 3,
                                        ["REPEAT must directly follow a slice instruction",
                                         "here it follows NOP"]),
    "missing .slice": ("# no section\n  HALT\n", 2,
                       ["instruction before the first '.slice NAME' directive"]),
    "unknown slice name": (".config tiny\n.slice MEM_W3\n  HALT\n", 2,
                           ["unknown slice 'MEM_W3' for config 'tiny'",
                            "slices are: MXM_W0, SXM_W, MEM_W1, MEM_W0, VXM"]),
    ".slice without a name": (".slice\n  HALT\n", 1, [".slice needs a name"]),
    "bad directive": (".slice VXM\n.repeat 3\n", 2,
                      ["unknown directive '.repeat'; expected .config or .slice"]),
    "unknown .config": (".config huge\n", 1,
                        ["unknown config 'huge'; presets are: tiny, tiny3, small, medium, "
                         "layer, full"]),
    "queue longer than imem_depth": (".config tiny\n.slice VXM\n" + "  NOP 1\n" * 512 +
                                     "  HALT\n", 515,
                                     ["slice VXM: instruction 512 does not fit",
                                      "imem_depth=512"]),
}


@pytest.mark.parametrize("case", list(ASM_CASES))
def test_asm_cli_names_file_line_and_text(case, tmp_path):
    src, line, fragments = ASM_CASES[case]
    path = tmp_path / "prog.s"
    path.write_text(src)
    out = tmp_path / "prog.bin"
    r = run_cli("-m", "arch.asm", str(path), "-o", str(out))
    err = assert_refused(r, 2, f"error: {path}:{line}: ", *fragments)
    offending = src.splitlines()[line - 1].strip()
    assert re.search(rf"\n\s+{re.escape(offending)}\n", err), err  # the source text
    assert not out.exists()


def test_asm_api_raises_asm_error_with_line():
    src, line, fragments = ASM_CASES["address out of range"]
    with pytest.raises(AsmError) as ei:
        assemble(src, None, "k.s")
    msg = str(ei.value)
    assert msg.startswith(f"k.s:{line}: ") and fragments[0] in msg
    assert msg.splitlines()[-1].strip() == "READ 512, s2.E"


def test_asm_cli_file_problems(tmp_path):
    # not a text file (e.g. a binary passed without -d): file, line, byte
    binf = tmp_path / "prog.s"
    binf.write_bytes(b".slice VXM\n  HALT\n\xff\xfe\x00")
    assert_refused(run_cli("-m", "arch.asm", str(binf)), 2,
                   f"error: {binf}:3: not a UTF-8 text file", "at byte 18", "use -d")
    # a missing file
    missing = tmp_path / "nope.s"
    assert_refused(run_cli("-m", "arch.asm", str(missing)), 2,
                   "No such file or directory", str(missing))
    # an unknown --config
    ok = tmp_path / "ok.s"
    ok.write_text(".slice VXM\n  HALT\n")
    assert_refused(run_cli("-m", "arch.asm", str(ok), "--config", "nope"), 2,
                   "error: unknown config 'nope'; presets are: tiny, tiny3, small, medium, "
                   "layer, full")


def test_disasm_cli_names_file_slice_and_word(tmp_path):
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"hello, world, this is not a program binary at all!")
    assert_refused(run_cli("-m", "arch.asm", "-d", str(garbage)), 2,
                   f"error: {garbage}: not a program binary (magic b'hell', expected b'TSPQ')")
    short = tmp_path / "short.bin"
    short.write_bytes(b"TSPQ")
    assert_refused(run_cli("-m", "arch.asm", "-d", str(short)), 2,
                   f"error: {short}: program binary truncated: 4 bytes, shorter than its "
                   "40-byte header")
    # a well-formed binary holding an illegal word: named by slice and word index
    bad = tmp_path / "illegal.bin"
    bad.write_bytes(Program(TINY, {"MEM_W1": [encode("NOP", n=3), 0x3F, HALT]}).to_bytes())
    assert_refused(run_cli("-m", "arch.asm", "-d", str(bad)), 2,
                   f"error: {bad}: MEM_W1[1]: illegal MEM opcode 63 in word 0x000000000000003f")
    # the binary was built for tiny; asking for small is refused with both hashes
    assert_refused(run_cli("-m", "arch.asm", "-d", str(bad), "--config", "small"), 2,
                   "program built for config 'tiny'", "not for 'small'")


# ============================================================================ 2. machine model
def model_error(text: str, cfg=TINY, mem=(), **run_kw) -> str:
    """Assemble ``text`` (must assemble, without the assembler's own REPEAT checks, which
    section 1 tests), run it on the model; the MachineError message."""
    prog = assemble(text, cfg, "t.s", check=False)
    m = Machine(cfg)
    for s, a, v in mem:
        m.write_mem(s, a, v)
    m.load_program(prog)
    with pytest.raises(MachineError) as ei:
        m.run(**run_kw)
    return str(ei.value)


def model_ok(text: str, cfg=TINY, mem=()) -> None:
    m = Machine(cfg)
    for s, a, v in mem:
        m.write_mem(s, a, v)
    m.load_program(assemble(text, cfg, "t.s"))
    m.run()


# tiny, west to east: MXM_W0 0, SXM_W 1, MEM_W1 2, MEM_W0 3, VXM 4, MEM_E0 5, MEM_E1 6,
# SXM_E 7, MXM_E0 8.  A READ issued in cycle t by MEM_W1 is readable at MEM_W0 in t + 2.
COLLISION = """
.slice MEM_E1
    NOP 1
    READ 0, s0.E
    REPEAT 1, 1, 0
    HALT
.slice SXM_E
    NOP 3
    RSUM.i8 s0.E, s4.W:i8    # cycle 3, writes s4.W in cycle 6
    SHS.i8 1, s0.E, s4.W     # cycle 4, writes s4.W in cycle 6 too
    HALT
"""

BANK_CONFLICT = """
.slice MEM_W1
    READ 0, s1.E
    HALT
.slice MEM_W0
    NOP 2
    WRITE s1.E, 5            # cycle 2: SRAM write of bank 0 in cycle 3
    READ {addr}, s2.E        # cycle 3
    HALT
"""


def test_model_stream_collision():
    msg = model_error(COLLISION)
    assert msg == ("SXM_E instruction 2 (SHS.i8 1, s0.E, s4.W) in cycle 4: stream collision: "
                   "writes s4.W in cycle 6, which instruction 1 (RSUM) issued in cycle 3 also "
                   "writes in that cycle")


def test_model_bank_conflict():
    msg = model_error(BANK_CONFLICT.format(addr=7))
    assert msg == ("MEM_W0 instruction 2 (READ 7, s2.E) in cycle 3: MEM bank conflict: reads "
                   "bank 0 in cycle 3 while a write issued in cycle 2 writes bank 0 in that cycle")
    model_ok(BANK_CONFLICT.format(addr=300))  # the other bank: legal


def test_model_invalid_stream_read():
    never = ".slice MEM_W0\n    WRITE s1.E, 3\n    HALT\n"
    assert model_error(never) == (
        "MEM_W0 instruction 0 (WRITE s1.E, 3) in cycle 0: reads stream s1.E at position 3, "
        "which holds no valid value in this cycle")
    # one cycle before the value arrives
    early = ".slice MEM_W1\n READ 0, s1.E\n HALT\n.slice MEM_W0\n NOP 1\n WRITE s1.E, 5\n HALT\n"
    assert re.fullmatch(r"MEM_W0 instruction 1 \(WRITE s1\.E, 5\) in cycle 1: reads stream "
                        r"s1\.E at position 3, which holds no valid value in this cycle",
                        model_error(early))
    model_ok(early.replace("NOP 1", "NOP 2"))


def test_model_deadlock():
    msg = model_error(".slice MEM_W0\n    NOP 4\n    SYNC\n    HALT\n")
    assert msg == ("deadlock: MEM_W0 (SYNC, instruction 1, in cycle 4) wait for a NOTIFY "
                   "that no queue can issue any more")


def test_model_sram_access_errors():
    """Host-side SRAM access of the model: slice, address and value are named."""
    m = Machine(TINY)
    with pytest.raises(ValueError, match=r"^write_mem\(MEM_X, 0\): 'MEM_X' is not a MEM slice "
                       r"of config 'tiny'; MEM slices are MEM_W1, MEM_W0, MEM_E0, MEM_E1$"):
        m.write_mem("MEM_X", 0, np.zeros(16, np.uint8))
    with pytest.raises(ValueError, match=r"^write_mem\(MEM_W0, 3\): values must be bytes "
                       r"\(int8 or uint8\): vector 0 lane 5 is 300$"):
        v = np.zeros(16, np.int64)
        v[5] = 300
        m.write_mem("MEM_W0", 3, v)
    with pytest.raises(ValueError, match=r"^write_mem\(MEM_W0, 0\): vectors must have 16 "
                       r"lanes, got shape \(8,\)$"):
        m.write_mem("MEM_W0", 0, np.zeros(8, np.uint8))
    with pytest.raises(ValueError, match=r"integer bytes, got dtype float64"):
        m.write_mem("MEM_W0", 0, np.full(16, 0.5))
    with pytest.raises(ValueError, match=r"^read_mem\(MEM_E1, 511\): addresses 511..512 out "
                       r"of range \[0, 511\]$"):
        m.read_mem("MEM_E1", 511, 2)
    with pytest.raises(ValueError, match=r"^read_mem\(MEM_E1, 0, -1\): the count must be an "
                                         r"int >= 0"):
        m.read_mem("MEM_E1", 0, -1)
    assert m.read_mem("MEM_E1", 3, 0).shape[0] == 0
    with pytest.raises(ValueError, match=r"^read_mem\(VXM, 0\): 'VXM' is not a MEM slice"):
        m.read_mem("VXM", 0)


def test_model_address_out_of_range():
    # the assembler refuses a direct out-of-range address (section 1); a REPEAT stride
    # reaches one at run time
    msg = model_error(".slice MEM_W0\n    READ 509, s2.E\n    REPEAT 5, 1, 1\n    HALT\n")
    assert msg == ("MEM_W0 instruction 0 (READ 512, s2.E, repetition 3) in cycle 3: after "
                   "REPEAT stride: addr=512 out of range [0, 511]")
    # a GATHER lane address (base + per-lane index) leaving the SRAM
    gather = (".slice MEM_W1\n    READ 0, s1.E\n    HALT\n"
              ".slice MEM_W0\n    NOP 2\n    GATHER 500, s1.E, s2.E\n    HALT\n")
    msg = model_error(gather, mem=[("MEM_W1", 0, np.full(16, 20, np.uint8))])
    assert msg == ("MEM_W0 instruction 1 (GATHER 500, s1.E, s2.E) in cycle 2: address 520 "
                   "out of range [0, 511]")
    model_ok(gather, mem=[("MEM_W1", 0, np.full(16, 11, np.uint8))])


def test_model_sequencing_errors():
    assert model_error(".slice VXM\n    NOP 2\n    REPEAT 1, 1\n    HALT\n") == (
        "VXM instruction 1 (REPEAT 1, 1) in cycle 2: REPEAT must directly follow a slice "
        "instruction")
    assert model_error(".slice VXM\n    NOP 100\n    HALT\n", max_cycles=50) == (
        "program did not halt within max_cycles=50 (still running: VXM at instruction 1)")
    m = Machine(SMALL)
    with pytest.raises(MachineError, match=r"^program is for config 'tiny', machine is 'small'$"):
        m.load_program(assemble(".slice VXM\n  HALT\n", TINY))


# ============================================================================ 6. raw words
def raw_error(queues: dict, cfg=TINY) -> str:
    m = Machine(cfg)
    m.load_program(Program(cfg, queues))
    with pytest.raises(MachineError) as ei:
        m.run()
    return str(ei.value)


def test_raw_illegal_opcode_names_slice_word_and_cycle():
    assert raw_error({"MEM_W1": [encode("NOP", n=3), 0x3F, HALT]}) == (
        "MEM_W1 instruction 1 in cycle 3: illegal instruction: illegal MEM opcode 63 in word "
        "0x000000000000003f")
    # the all-zero word is illegal everywhere
    assert raw_error({"VXM": [0]}) == (
        "VXM instruction 0 in cycle 0: illegal instruction: illegal VXM opcode 0 in word "
        "0x0000000000000000")


def test_raw_out_of_range_address_and_reserved_bits():
    a = TINY.mem_addresses
    read = encode("READ", addr=a, out_s=0)  # fits the field, not this config's SRAM
    assert raw_error({"MEM_W0": [encode("NOP", n=2), read, HALT]}) == (
        f"MEM_W0 instruction 1 in cycle 2: illegal instruction: READ: addr={a} out of range "
        f"[0, {a - 1}]")
    assert raw_error({"SXM_W": [HALT | 1 << 63]}) == (
        "SXM_W instruction 0 in cycle 0: illegal instruction: HALT word 0x8000000000000005 has "
        "reserved bits set (0x8000000000000000)")


def test_raw_words_checked_by_program():
    with pytest.raises(ProgramError, match=r"^MEM_W0 word 1: 0x10000000000000000 is not a "
                                           r"64-bit value"):
        Program(TINY, {"MEM_W0": [HALT, 1 << 64]})
    with pytest.raises(ProgramError, match=r"^VXM word 2: -0x1 is not a 64-bit value"):
        Program(TINY, {"VXM": [HALT, HALT, -1]})
    with pytest.raises(ProgramError, match=r"^VXM word 1: expected an int instruction word, "
                                           r"got str 'HALT'"):
        Program(TINY, {"VXM": [HALT, "HALT"]})
    with pytest.raises(ProgramError, match=r"^VXM: expected a sequence of instruction words, "
                                           r"got int"):
        Program(TINY, {"VXM": HALT})
    with pytest.raises(ProgramError, match=r"has no slice\(s\) \['MEM_W3'\]; slices are: "):
        Program(TINY, {"MEM_W3": [HALT]})
    with pytest.raises(ProgramError, match=r"^VXM: 513 instructions exceed imem_depth=512$"):
        Program(TINY, {"VXM": [HALT] * 513})
    prog = Program(TINY, {"MEM_W1": [encode("NOP", n=3), 0x3F, HALT]})
    with pytest.raises(IsaError, match=r"^MEM_W1 word 1: illegal MEM opcode 63"):
        prog.instrs("MEM_W1")
    # numpy integers are words too
    assert Program(TINY, {"VXM": np.array([HALT], np.uint64)}).words("VXM") == [HALT]


def test_truncated_binary_is_refused_at_every_length():
    """Cut anywhere -- header, queue-count table, words -- a binary is a ProgramError that
    says it is truncated, never a struct.error or a shorter program."""
    data = Program(TINY, {"VXM": [encode("NOP", n=2), HALT]}).to_bytes()
    n_q = TINY.n_positions
    table_end = 40 + 4 * n_q  # header (40 bytes) + one u32 count per queue
    assert len(data) == table_end + 8 * (n_q + 1)  # every queue 1 word, VXM 2
    for cut in range(len(data)):
        with pytest.raises(ProgramError, match=r"^program binary truncated: ") as ei:
            Program.from_bytes(data[:cut])
        assert f"{cut} bytes" in str(ei.value)
        if 40 <= cut < table_end:
            assert f"take {table_end}" in str(ei.value)
        elif cut >= table_end:
            assert f"need {len(data)}" in str(ei.value)
    assert Program.from_bytes(data).words("VXM") == [encode("NOP", n=2), HALT]
    with pytest.raises(ProgramError, match=rf"is {len(data) + 1} bytes, header says "
                                           rf"{len(data)}$"):
        Program.from_bytes(data + b"\0")


# ============================================================== 3. blocks that do not fit
def _compile_error(blk, cfg, **kw) -> CompileError:
    with pytest.raises(CompileError) as ei:
        compile_block(blk, cfg, **kw)
    return ei.value


@pytest.mark.parametrize("cfg, shape, resource, fragments", [
    ("tiny", (32, 32, 2, 64), "shape",
     ["seq_len=32 exceeds the vector length 16 of config 'tiny'", "superlanes >= 2"]),
    ("medium", (64, 32, 2, 64), "shape",
     ["seq_len=64 exceeds the 32 MXM accumulator slots"]),
    ("tiny", (16, 128, 2, 512), "sram",  # weights alone: caught before any lowering
     ["does not fit the SRAM of config 'tiny'", "needs at least 12288 vectors",
      "for its int8 weights alone", "the config has 2048 (4 MEM slices x 512 addresses",
      "Raise mem_depth (now 256)"]),
    ("tiny", (16, 64, 2, 64), "sram",  # fits by weight bytes, not with everything else
     ["does not fit the SRAM of config 'tiny'", "at its peak", "the config has 2048",
      "first failing allocation"]),
    ("tiny", (16, 32, 2, 160), "sram",  # the total fits, one side's slices do not
     ["does not fit the SRAM of config 'tiny'", "the slices a tensor must go to ran out",
      "is within the config's 2048 (4 MEM slices", "first failing allocation: y.w",
      "side W", "Raise mem_depth (now 256)"]),
    (TINY.replace(name="tiny-1mem", mem_slices_per_hemisphere=1), (16, 32, 2, 64), "shape",
     ["needs at least 2 MEM slices per hemisphere but config 'tiny-1mem' has "
      "mem_slices_per_hemisphere=1"]),
    (TINY.replace(name="tiny-imem64", imem_depth=64), (8, 16, 2, 16), "imem",
     ["does not fit the instruction memory of config 'tiny-imem64'", "imem_depth is 64",
      "raise imem_depth to 256"]),
], ids=["seq>VL", "seq>acc-slots", "sram-weights", "sram-peak", "sram-side", "mem-slices", "imem"])
def test_compile_error_names_needed_and_available(cfg, shape, resource, fragments):
    err = _compile_error(make_block(0, *shape), cfg, effort="fast")
    msg = str(err)
    assert err.resource == resource, msg
    for f in fragments:
        assert f in msg, msg
    m = re.search(r"needs at least (\d+) vectors.* the config has (\d+)", msg)
    if m:
        assert int(m.group(1)) > int(m.group(2)), msg
    m = re.search(r"needs (\d+) words but imem_depth is (\d+)", msg)
    if m:
        assert int(m.group(1)) > int(m.group(2)), msg


def test_compile_error_for_inconsistent_blocks():
    blk = make_block(0, 16, 32, 2, 64)
    err = _compile_error(dataclasses.replace(blk, n_heads=3), "small")
    assert str(err) == "d_head: d_model=32 is not a multiple of n_heads=3"
    err = _compile_error(dataclasses.replace(blk, d_ff=48), "small")
    assert str(err) == ("w1: weight shape (64, 32), expected (48, 32) for d_model=32, d_ff=48")
    with pytest.raises(ValueError, match=r"^n_heads: d_model=32 is not divisible by n_heads=3$"):
        make_block(0, 16, 32, 3, 64)
    with pytest.raises(ValueError, match=r"^unknown config 'nope'; presets are: tiny, tiny3, "):
        compile_block(blk, "nope")
    with pytest.raises(TypeError, match=r"^block: expected a golden.block.QuantBlock, got dict$"):
        compile_block({}, "small")


# ``python -m sim`` with building replaced by a guard that exits 99
SIM_GUARD = """
import os, runpy, sys
import sim.build as b
def _no_build(*a, **k):
    sys.stderr.write("BUILD ATTEMPTED\\n"); sys.stderr.flush(); os._exit(99)
b.build_sim = b.generate_verilog = _no_build
runpy.run_module("sim", run_name="__main__", alter_sys=True)
"""


def run_sim_guarded(tmp_path, *args) -> subprocess.CompletedProcess:
    return run_cli("-c", SIM_GUARD, *args, env={"TSP_BUILD_DIR": str(tmp_path / "build")})


@pytest.mark.parametrize("args, rc, fragments", [
    (["--config", "tiny", "--seq", "32"], 2,
     ["error: seq_len=32 exceeds the vector length 16 of config 'tiny'",
      "use a config with superlanes >= 2 (preset 'small' has 2)"]),
    (["--config", "small", "--seq", "100000"], 2,  # before calibration (quadratic in seq)
     ["error: seq_len=100000 exceeds the 32 MXM accumulator slots", "no config runs it",
      "seq_len <= 32"]),
    (["--config", "tiny", "--d-model", "128", "--d-ff", "512"], 2,
     ["error: the block does not fit the SRAM of config 'tiny'", "needs at least 12288",
      "has 2048"]),
    (["--heads", "3"], 2, ["error: --heads 3 (make: HEADS=) must divide --d-model 32"]),
    (["--seq", "0"], 2, ["error: --seq (make: SEQ=) must be >= 1, got 0"]),
    (["--seed", "-1"], 2, ["error: seed: expected an int >= 0, got -1"]),
    (["--config", "nope"], 2, ["error: unknown config 'nope'; presets are: tiny, tiny3, small"]),
], ids=["seq>VL", "seq-huge", "sram", "heads", "seq0", "seed", "config"])
def test_sim_block_cli_refuses_before_building(tmp_path, args, rc, fragments):
    r = run_sim_guarded(tmp_path, "block", *args)
    assert "BUILD ATTEMPTED" not in r.stderr and r.returncode != 99
    assert_refused(r, rc, *fragments)
    assert not (tmp_path / "build").exists()  # nothing written, generated or built


@pytest.mark.parametrize("args, rc, fragments", [
    (["--config", "tiny", "--context", "64"], 2,
     ["error: max_context=64 must be in 1..16 on config 'tiny'", "VL = 16",
      "use a config with superlanes >= 4 (preset 'medium' has 4)"]),
    (["--config", "small", "--context", "100000"], 2,
     ["error: max_context=100000 must be in 1..32", "the largest is 256"]),
    (["--config", "tiny", "--context", "8", "--steps", "9"], 2,
     ["error: steps=9 must be in 1..8 (the maximum context"]),
    (["--heads", "3"], 2, ["error: --heads 3 (make: HEADS=) must divide --d-model 32"]),
    (["--context", "0"], 2, ["error: --context (make: SEQ=) must be >= 1, got 0"]),
], ids=["context>VL", "context-huge", "steps", "heads", "context0"])
def test_sim_decode_cli_refuses_before_building(tmp_path, args, rc, fragments):
    r = run_sim_guarded(tmp_path, "decode", *args)
    assert "BUILD ATTEMPTED" not in r.stderr and r.returncode != 99
    assert_refused(r, rc, *fragments)
    assert not (tmp_path / "build").exists()


def test_sim_layer_cli_refuses(tmp_path):
    r = run_sim_guarded(tmp_path, "layer", "--steps", "20")
    assert "BUILD ATTEMPTED" not in r.stderr
    assert_refused(r, 2, "error: steps=20 must be in 1..16 (the context)")
    r = run_sim_guarded(tmp_path, "layer", "--layer", "9")
    assert "BUILD ATTEMPTED" not in r.stderr
    assert_refused(r, 2, "error: layer=9: the model has layers 0..1")


def test_sim_config_lists_validated_before_any_build(tmp_path):
    for cmd in ("lint", "bench-rtl"):
        r = run_sim_guarded(tmp_path, cmd, "--config", "tiny,nope")
        assert "BUILD ATTEMPTED" not in r.stderr, cmd
        assert_refused(r, 2, "error: unknown config 'nope'")


def test_sim_block_unguarded_config_error():
    """The real ``python -m sim`` (no guard): an unknown config stops it at once."""
    r = run_cli("-m", "sim", "block", "--config", "nope")
    assert_refused(r, 2, "error: unknown config 'nope'; presets are: "
                         "tiny, tiny3, small, medium, layer, full")


def test_sim_block_in_process_never_reaches_build(tmp_path, monkeypatch, capsys):
    import sim.__main__ as sim_main
    import sim.block as sim_block

    def boom(*a, **k):
        raise AssertionError("build reached")
    monkeypatch.setattr(sim_block, "build_sim", boom)
    monkeypatch.setattr(sim_main, "build_sim", boom)
    monkeypatch.setattr(sim_main, "generate_verilog", boom)
    monkeypatch.setenv("TSP_BUILD_DIR", str(tmp_path / "build"))
    assert sim_main.main(["block", "--config", "tiny", "--seq", "32"]) == 2
    assert "seq_len=32 exceeds the vector length 16 of config 'tiny'" in capsys.readouterr().err
    assert not (tmp_path / "build").exists()


@pytest.mark.parametrize("args, fragments", [
    (["--config", "nope"], ["error: unknown config 'nope'"]),
    (["--heads", "3"], ["error: n_heads: d_model=32 is not divisible by n_heads=3"]),
    (["--seed", "-4"], ["error: seed: expected an int >= 0, got -4"]),
    (["--config", "tiny", "--seq", "32"],
     ["error: cannot compile the block (seq 32, d_model 32, heads 2, d_ff 64, causal, seed 0) "
      "for config 'tiny': seq_len=32 exceeds the vector length 16"]),
    (["--seq", "100000"],
     ["error: cannot compile the block (seq 100000,", "seq_len=100000 exceeds the 32 MXM "
      "accumulator slots (one per token row): no config runs it; use seq_len <= 32"]),
])
def test_compiler_cli_refuses(tmp_path, args, fragments):
    r = run_cli("-m", "compiler", *args, "--out", str(tmp_path / "out"))
    assert_refused(r, 2, *fragments)
    assert not (tmp_path / "out").exists()


# ============================================================================ 4. configs
def _range_cases():
    for field, (lo, hi) in TspConfig._RANGES.items():
        if lo == hi:
            yield field, lo + 1, (f"TspConfig.{field} must be {lo} (fixed by the architecture), "
                                   f"got {lo + 1}")
            continue
        for v in (lo - 1, hi + 1):
            if field in TspConfig._ZERO_IS_DEFAULT:
                yield field, v, (f"TspConfig.{field} must be 0 (= imem_depth) or in "
                                 f"[{lo}, {hi}], got {v}")
            else:
                yield field, v, f"TspConfig.{field} must be in [{lo}, {hi}], got {v}"


@pytest.mark.parametrize("field, value, message", list(_range_cases()))
def test_config_field_out_of_range(field, value, message):
    with pytest.raises(ValueError) as ei:
        SMALL.replace(**{field: value})
    assert str(ei.value) == message


@pytest.mark.parametrize("field, value, message", [
    ("mem_depth", 300, "TspConfig.mem_depth must be a power of two in [16, 4096], got 300"),
    ("imem_depth", 1000,
     "TspConfig.imem_depth must be a power of two in [16, 262144], got 1000"),
    ("superlanes", 2.0, "TspConfig.superlanes must be an int in [1, 20], got float 2.0"),
    ("superlanes", "2", "TspConfig.superlanes must be an int in [1, 20], got str '2'"),
    ("mxms_per_hemisphere", True,
     "TspConfig.mxms_per_hemisphere must be an int in [1, 4], got bool True"),
    ("name", "", "TspConfig.name must be a non-empty string, got ''"),
])
def test_config_field_wrong_kind(field, value, message):
    with pytest.raises(ValueError) as ei:
        SMALL.replace(**{field: value})
    assert str(ei.value) == message


def test_config_unknown_names():
    with pytest.raises(ValueError) as ei:
        get_config("nope")
    assert str(ei.value) == ("unknown config 'nope'; presets are: tiny, tiny3, small, "
                             "medium, layer, full")
    with pytest.raises(ValueError, match=r"^unknown TspConfig field\(s\) \['superlane'\]; "
                                         r"fields are \["):
        TspConfig.from_dict({**PRESETS["tiny"].to_dict(), "superlane": 2})
    with pytest.raises(ValueError, match=r"^config 'tiny' has no slice 'MEM_W2'; slices are: "
                                         r"MXM_W0, SXM_W, MEM_W1"):
        TINY.slice("MEM_W2")


# ============================================================================ 5. golden inputs
@pytest.fixture(scope="module")
def blk():
    return make_block(0, 16, 32, 2, 64)


def test_forward_int_wrong_shape_and_dtype(blk):
    with pytest.raises(ValueError) as ei:
        blk.forward_int(np.zeros((8, 32), np.int32))
    assert str(ei.value) == "x_q: expected shape (16, 32), got (8, 32)"
    with pytest.raises(TypeError) as ei:
        blk.forward_int(np.zeros((16, 32)))
    assert str(ei.value) == ("x_q: expected dtype int32, got float64 (quantize float inputs "
                             "first, e.g. with QuantBlock.quantize_input)")
    with pytest.raises(TypeError, match=r"^x_q: expected a numpy array of dtype int32, got list$"):
        blk.forward_int([[0] * 32] * 16)


def test_forward_int_out_of_range_values(blk):
    x = np.zeros((16, 32), np.int64)
    x[3, 4], x[0, 0] = 2**31, -5
    with pytest.raises(TypeError) as ei:
        blk.trace(x)
    assert str(ei.value) == ("x_q: expected dtype int32, got int64 (values in [-5, 2147483648], "
                             "outside the int32 range [-2147483648, 2147483647])")
    with pytest.raises(TypeError) as ei:
        blk.forward_int(np.ones((16, 32), np.int8))
    assert str(ei.value) == ("x_q: expected dtype int32, got int8 (values in [1, 1], within "
                             "the int32 range [-2147483648, 2147483647]; convert with "
                             ".astype(np.int32))")


def test_float_entry_points(blk):
    with pytest.raises(ValueError, match=r"^x_float: expected shape \(16, 32\), got \(16, 31\)$"):
        blk.forward_float(np.zeros((16, 31)))
    with pytest.raises(TypeError, match=r"^x_float: expected a floating-point array, got dtype "
                                        r"int8$"):
        blk.quantize_input(np.zeros((16, 32), np.int8))
    x = np.zeros((16, 32))
    x[2, 2] = np.nan
    with pytest.raises(ValueError, match=r"^x_float: contains NaN or infinity$"):
        blk.quantize_input(x)
    with pytest.raises(ValueError, match=r"^y_q: expected shape \(16, 32\), got \(32, 16\)$"):
        blk.dequantize_output(np.zeros((32, 16), np.int32))


def test_quantize_block_wrong_weights():
    p = random_float_params(0, 32, 64)
    cal = np.zeros((2, 16, 32))
    bad = {**p, "w2": np.zeros((32, 48))}
    with pytest.raises(ValueError) as ei:
        quantize_block(bad, cal, 2)
    assert str(ei.value) == "float_params['w2']: expected shape (32, 64), got (32, 48)"
    with pytest.raises(ValueError, match=r"^float_params: missing keys \['bo'\]"):
        quantize_block({k: v for k, v in p.items() if k != "bo"}, cal, 2)
    with pytest.raises(ValueError, match=r"^n_heads: d_model=32 is not divisible by n_heads=5$"):
        quantize_block(p, cal, 5)
    with pytest.raises(ValueError, match=r"^calibration_inputs: expected shape \(seq_len, 32\) "
                                         r"or \(batch, seq_len, 32\), got \(16, 30\)$"):
        quantize_block(p, np.zeros((16, 30)), 2)


@pytest.mark.parametrize("kw, message", [
    (dict(seq_len=0), "seq_len: expected a positive int, got 0"),
    (dict(d_model=32.0), "d_model: expected a positive int, got 32.0"),
    (dict(n_heads=True), "n_heads: expected a positive int, got True"),
    (dict(d_ff=-64), "d_ff: expected a positive int, got -64"),
    (dict(seed=-1), "seed: expected an int >= 0, got -1"),
    (dict(seed=1.5), "seed: expected an int >= 0, got 1.5"),
    (dict(causal="no"), "causal: expected True or False, got 'no'"),
    (dict(n_calibration=0), "n_calibration: expected a positive int (random sequences to "
                            "calibrate the scales on), got 0"),
    (dict(headroom=0.0), "headroom: expected a positive number (the factor on the calibrated "
                         "ranges), got 0.0"),
    (dict(headroom=float("inf")), "headroom: expected a positive number (the factor on the "
                                  "calibrated ranges), got inf"),
])
def test_make_block_parameters(kw, message):
    args = dict(seed=0, seq_len=16, d_model=32, n_heads=2, d_ff=64) | kw
    with pytest.raises(ValueError) as ei:
        make_block(**args)
    assert str(ei.value) == message


def test_requantize_ranges():
    with pytest.raises(ValueError) as ei:
        requantize(np.array([0, 2**31], np.int64), 2**30, 0)
    assert str(ei.value) == ("requantize: acc out of range: allowed [-2147483648, 2147483647], "
                             "got 2147483648 at [1] (min 0, max 2147483648)")
    with pytest.raises(ValueError, match=r"^requantize: shift out of range: allowed \[-31, 30\], "
                                         r"got 31"):
        requantize(np.array([1]), 2**30, 31)
    with pytest.raises(TypeError, match=r"^requantize: acc must have an integer dtype, got "
                                        r"float64$"):
        requantize(np.array([1.5]), 2**30, 0)


def test_compiled_block_input_checked():
    blk = make_block(0, 8, 16, 2, 16)
    cb = compile_block(blk, "tiny", effort="fast")
    with pytest.raises(ValueError) as ei:
        cb.sram_image(np.zeros((8, 16)))
    assert str(ei.value) == ("x_q: expected an int32 array of shape (8, 16) (the residual "
                             "stream, QuantBlock.quantize_input), got float64 array of shape "
                             "(8, 16)")
    with pytest.raises(ValueError, match=r"got int32 array of shape \(16, 8\)$"):
        cb.run_on_model(np.zeros((16, 8), np.int32))


@pytest.mark.parametrize("args, rc, fragments", [
    (["--heads", "3"], 2, ["error: n_heads: d_model=32 is not divisible by n_heads=3"]),
    (["--seed", "-1"], 2, ["error: seed: expected an int >= 0, got -1"]),
    (["--d-ff", "0"], 2, ["error: d_ff: expected a positive int, got 0"]),
    (["--seeds", "3-1"], 2, ["argument --seeds: '3-1' in '3-1' is not a seed or a range LO-HI "
                             "with LO <= HI"]),
    # refused before calibration allocates 32 x 2 x 100000^2 float64 scores (4.66 TiB)
    (["--seq", "100000"], 2, ["error: seq_len=100000: the float64 attention scores of 32 "
                              "sequence(s) x 2 head(s) need", "GiB, over the 4 GiB limit",
                              "seq_len <= 2896 fits"]),
])
def test_golden_cli_refuses(args, rc, fragments):
    assert_refused(run_cli("-m", "golden", *args), rc, *fragments)


# ============================================================= Makefile variables (booleans)
def make_dry(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-n", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("var, value", [("CAUSAL", "maybe"), ("LOCKSTEP", "2"),
                                        ("WAVES", "2"), ("WAVES", "on")])
def test_make_refuses_non_boolean_flags(var, value):
    r = make_dry("sim", f"{var}={value}")
    assert r.returncode != 0
    assert f"{var}={value} is not a boolean: use 1/yes/true or 0/no/false" in r.stderr
    assert "python -m sim" not in r.stdout


def test_make_boolean_flags_reach_the_cli():
    on = make_dry("sim", "CAUSAL=no", "LOCKSTEP=true", "WAVES=1").stdout
    assert "--no-causal" in on and "--lockstep" in on and "--waves" in on
    off = make_dry("sim", "CAUSAL=yes", "LOCKSTEP=0", "WAVES=false").stdout
    assert "-m sim block" in off
    assert "--no-causal" not in off and "--lockstep" not in off and "--waves" not in off


def test_make_checks_the_model_before_installing_the_models_package():
    """``MODEL=`` is checked (`python -m sim model-check`) in the recipe that installs the
    models package, before the install: a misspelt name used to download 98 MB first."""
    lines = make_dry("-B", "llm", "MODEL=bogus").stdout.splitlines()
    check = [i for i, ln in enumerate(lines) if "-m sim model-check --model 'bogus'" in ln]
    install = [i for i, ln in enumerate(lines) if ".[dev,models]" in ln]
    assert check and install and check[0] < install[0], lines
    assert "model-check" not in make_dry("-B", "llm").stdout  # no MODEL=: the default


@pytest.mark.parametrize("model, fragment", [
    ("bogus", "error: MODEL=bogus: unknown model 'bogus': known ['smollm2-135m'] or a path"),
    ("{tmp}/absent.gguf", "GGUF file not found: {tmp}/absent.gguf"),
    ("tiny", None), ("smollm2-135m", None), ("{tmp}/here.gguf", None),
], ids=["unknown", "no-file", "tiny", "known", "a-file"])
def test_model_check_names_the_model(model, fragment, tmp_path):
    """Refused by name without loading anything (no models package needed); accepted: the
    random ``tiny`` llama, a known model, an existing .gguf file (read only when used)."""
    (tmp_path / "here.gguf").write_bytes(b"")
    r = run_cli("-m", "sim", "model-check", "--model", model.format(tmp=tmp_path))
    if fragment is None:
        assert r.returncode == 0 and not r.stderr, r.stderr
    else:
        assert_refused(r, 2, fragment.format(tmp=tmp_path))


@pytest.mark.parametrize("args, fragment", [
    (["llm-chips", "--chips", "x"], "--chips 'x': chip counts in 1..16"),
    (["llm-chips", "--chips", "0 2"], "--chips '0 2': chip counts in 1..16"),
    (["llm-chips", "--tokens", "0"], "--tokens must be >= 1 (got 0)"),
    (["llm-chips", "--prompt", ""], "--prompt is empty"),
    (["fabric", "--config", "tiny", "--programs", "0"], "--programs must be >= 1 (got 0)"),
], ids=["chips-text", "chips-0", "tokens-0", "prompt-empty", "fabric-programs-0"])
def test_sim_commands_refuse_their_arguments_first(args, fragment, monkeypatch, capsys):
    """Checked before any model is loaded or anything is built (these were tracebacks, or
    a testbench that ran and then failed)."""
    import sim.__main__ as sim_main

    def boom(*a, **k):
        raise AssertionError("work started")
    monkeypatch.setattr(sim_main, "build_sim", boom)
    import sim.llm_chips
    monkeypatch.setattr(sim.llm_chips, "run_llm_chips", boom)
    assert sim_main.main(args) == 2
    assert fragment in capsys.readouterr().err


def test_llm_chips_unknown_model_is_an_error_not_a_traceback(capsys):
    import sim.__main__ as sim_main

    assert sim_main.main(["llm-chips", "--model", "bogus", "--chips", "1"]) == 2
    assert "error: unknown model 'bogus'" in capsys.readouterr().err


def test_llm_sweep_is_checked_before_the_run(tmp_path):
    """A --sweep context the layer step cannot take is refused before the model runs (it
    used to fail after generating the text), naming --sweep."""
    from compiler import CompileError
    from sim.llm import run_llm

    with pytest.raises(CompileError, match=r"--sweep context 1000, VL 64"):
        run_llm("medium:vxm_imem_depth=4096", "tiny", [1], 2, None, [1000], tmp_path,
                log=lambda *a: None)


def test_compile_options_are_checked_by_name():
    """effort and the list-scheduling order are refused when unknown (they were taken as
    the default silently)."""
    from compiler import compile_block
    from compiler.decode import compile_decode
    from compiler.graph import Graph, Node, compile_graph
    from golden.block import make_block

    blk = make_block(0, 8, 32, 2, 64)
    for f in (compile_block, compile_decode):
        with pytest.raises(ValueError, match=r"effort='slow': expected one of 'best', 'fast'"):
            f(blk, "tiny", effort="slow")
    g = Graph(inputs={"x": (2, 16, 4)}, nodes=(Node("y", "add", ("x", "x")),), outputs=("y",))
    with pytest.raises(ValueError, match=r"order='bogus': the list-scheduling orders are "
                                         r"'cycle', 'priority', 'program'"):
        compile_graph(g, "tiny", order="bogus")


@pytest.mark.parametrize("inputs, nodes, fragment", [
    ({"x": (2, 16, 4)}, [("y", "requant", ("x",))],
     "node 'y' (requant): its inputs ['x'] or attrs [] do not fit the op (KeyError: "
     "'multiplier')"),
    ({"x": (2, 16, 4)}, [("y", "add", ("x",))],
     "node 'y' (add): its inputs ['x'] or attrs [] do not fit the op (ValueError"),
    ({"x": (0, 16, 4)}, [("y", "add", ("x", "x"))],
     "graph input 'x': expected (rows >= 1, width >= 1, bytes 1, 2 or 4), got (0, 16, 4)"),
    ({"x": (2, 16, 3)}, [("y", "add", ("x", "x"))],
     "graph input 'x': expected (rows >= 1, width >= 1, bytes 1, 2 or 4), got (2, 16, 3)"),
], ids=["attr-missing", "too-few-inputs", "no-rows", "three-bytes"])
def test_graph_errors_name_the_node_or_input(inputs, nodes, fragment):
    from compiler import CompileError
    from compiler.graph import Graph, Node, compile_graph

    g = Graph(inputs=inputs, nodes=tuple(Node(*n) for n in nodes), outputs=("y",))
    with pytest.raises(CompileError, match=re.escape(fragment)):
        compile_graph(g, "tiny")


@pytest.mark.parametrize("args, fragment", [
    (["block", "--config", "tiny", "--chips", "2", "--heads", "3", "--d-model", "48"],
     "--chips 2: the block's 3 heads and d_ff 64 must split over the chips"),
    (["block", "--config", "tiny", "--chips", "2", "--lockstep"],
     "--lockstep and --waves are of one chip's run, not of --chips"),
], ids=["heads", "lockstep"])
def test_sim_block_chips_refusals(args, fragment, monkeypatch, capsys):
    import sim.__main__ as sim_main

    monkeypatch.setattr(sim_main, "_check_system_built", lambda chips: None)
    assert sim_main.main(args) == 2
    assert fragment in capsys.readouterr().err


def test_fuzz_x_seed_needs_replay(capsys):
    import sim.__main__ as sim_main

    assert sim_main.main(["fuzz", "--config", "tiny", "-n", "2", "--x-seed", "3"]) == 2
    assert "error: --x-seed is the X seed of a --replay" in capsys.readouterr().err


def test_graph_inputs_are_checked_at_run():
    """A missing input or a float array is refused by name (a bare KeyError, or the floats
    silently truncated, before)."""
    from compiler.graph import Graph, Node, compile_graph

    g = Graph(inputs={"x": (2, 16, 4)}, nodes=(Node("y", "add", ("x", "x")),), outputs=("y",))
    cg = compile_graph(g, "tiny")
    with pytest.raises(ValueError, match=r"inputs: missing \['x'\]"):
        cg.run_on_model({})
    with pytest.raises(ValueError, match=r"input 'x': expected integers, got float64"):
        cg.run_on_model({"x": np.zeros((2, 16))})
    out, _ = cg.run_on_model({"x": np.arange(32).reshape(2, 16)})
    assert np.array_equal(out["y"], 2 * np.arange(32).reshape(2, 16))


@pytest.mark.parametrize("args, message", [
    (["fuzz", "--chips", "0"], "--chips must be 1 (one chip), 2 or 4, got 0"),
    (["fuzz", "--chips", "2", "--kinds", "x", "-n", "1"],
     "--kinds apply to the one-chip fuzz, not to --chips 2"),
    (["fuzz", "--chips", "2", "--seed", "-1", "-n", "1"], "--seed must be >= 0, got -1"),
    (["fuzz", "--replay", ""], "--replay is empty"),
    (["coverage", "--seed", "-1"], "--seed must be >= 0, got -1"),
    (["fabric", "--config", "tiny", "--seed", "-1"], "--seed must be >= 0, got -1"),
    (["fabric", "--config", "tiny", "--cycles", "-1"], "--cycles must be >= 1 (got -1)"),
    (["bench-rtl", "--config", "tiny,"], "--config 'tiny,' has an empty name"),
    (["bench-rtl", "--threads", "abc"], "--threads must be comma-separated thread counts"),
    (["bench-rtl", "--threads", "2"], "counts >= 1, with 1 among them"),
    (["bench-rtl", "--config", "tiny,full"], "config 'full' is too large to simulate"),
    (["lint", "--config", "medium:superlanes=20"], "generation alone would take about 6 min"),
    (["layer", "--seed", "-1"], "--seed must be >= 0, got -1"),
    (["model", "--seed", "-1"], "--seed must be >= 0, got -1"),
    (["verilog", "--config", "+c2c"], "config '+c2c': no config name before +c2c"),
    (["verilog", "--config", "tiny:superlanes=1_0"], "superlanes must be an integer, got '1_0'"),
])
def test_sim_cli_refuses_before_any_build(args, message, monkeypatch, tmp_path, capsys):
    """Bad options of the sim commands stop with an error naming the option, before any
    Verilog is generated (a fourth sweep found each of these starting a generation, running
    something else, or silently taking a default)."""
    import sim.__main__ as sim_main
    import sim.build

    def no_generation(*a, **k):
        raise AssertionError("a generation started")

    monkeypatch.setattr(sim.build, "generate_verilog", no_generation)
    monkeypatch.setattr(sim_main, "generate_verilog", no_generation)
    monkeypatch.setenv("TSP_BUILD_DIR", str(tmp_path))
    assert sim_main.main(args) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("env, message", [
    ({"TSP_PGO": "2"}, "TSP_PGO='2': expected 1 (profile-guided builds) or 0"),
    ({"TSP_CXX_OPT": "-O9"}, "TSP_CXX_OPT='-O9' is not a g++ optimisation level"),
    ({"TSP_MARCH": "x86"}, "TSP_MARCH='x86': expected native or portable"),
])
def test_environment_choices_are_refused_before_generation(env, message, monkeypatch, capsys,
                                                           tmp_path):
    """$TSP_PGO / $TSP_CXX_OPT / $TSP_MARCH out of range: an error line (it was a
    ToolchainError traceback, $TSP_PGO after the Verilog generation)."""
    import sim.__main__ as sim_main
    import sim.build

    def no_generation(*a, **k):
        raise AssertionError("a generation started")

    monkeypatch.setattr(sim.build, "generate_verilog", no_generation)
    monkeypatch.setenv("TSP_BUILD_DIR", str(tmp_path))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert sim_main.main(["verilog", "--config", "tiny"]) == 2
    assert message in capsys.readouterr().err


def test_layer_context_and_model_file_errors(capsys, tmp_path):
    import sim.__main__ as sim_main

    assert sim_main.main(["layer", "--context", "0"]) == 2
    assert "context=0 must be >= 1 (the KV cache's positions)" in capsys.readouterr().err
    assert sim_main.main(["layer", "--model", str(tmp_path / "nope.gguf")]) == 2
    assert "GGUF file not found" in capsys.readouterr().err


def test_hdl_components_check_their_parameters():
    """Each component refuses a parameter out of range by name before it is built (some
    raised an AttributeError from inside, some built empty or wrong hardware)."""
    from amaranth.lib import data

    import hdl.c2c
    import hdl.chip
    import hdl.icu
    import hdl.mem
    import hdl.stream
    import hdl.sxm
    from hdl.mxm import MxmMacArray, MxmWeights
    from hdl.tile import SkewChain

    tiny = get_config("tiny")
    cases = [
        (lambda: hdl.chip.Chip("tiny"), "Chip: cfg must be a TspConfig, got str"),
        (lambda: hdl.mem.MemSlice(None), "MemSlice: cfg must be a TspConfig, got NoneType"),
        (lambda: hdl.sxm.SxmReduceUnit("tiny"), "SxmReduceUnit: cfg must be a TspConfig"),
        (lambda: hdl.stream.SuperlaneStreams(tiny, 0.5), "superlane must be an int, got 0.5"),
        (lambda: hdl.c2c.C2cTile(tiny), "C2cTile: config 'tiny' has no C2C links"),
        (lambda: hdl.icu.InstructionControlUnit(tiny, "MEM_E0"),
         "position must be a SlicePosition of cfg.slices, got str 'MEM_E0'"),
        (lambda: MxmWeights(16, k=3), "MxmWeights k must be a power of two dividing vl = 16"),
        (lambda: MxmWeights(15), "MxmWeights: vl must be a positive multiple of 16"),
        (lambda: MxmMacArray(0), "MxmMacArray: vl must be a positive multiple of 16"),
        (lambda: MxmMacArray(16, rows=2.5), "MxmMacArray rows must be in 1..16"),
        (lambda: SkewChain(data.StructLayout({"valid": 1}), True), "depth must be an int >= 1"),
        (lambda: SkewChain(data.StructLayout({"x": 1}), 2), "valid_field 'valid' is not a field"),
    ]
    for make, message in cases:
        with pytest.raises(ValueError) as ei:
            make()
        assert message in str(ei.value), str(ei.value)
