"""int8 matmul with per-channel requantisation on the cycle-accurate machine model.

Run (from the repository root)::

    .venv/bin/python examples/matmul.py --config tiny --m 4 --k 32 --n 12
    .venv/bin/python examples/matmul.py --config small --asm      # also print the assembly

Computes ``Y = requantize(X @ W.T + b, multiplier, shift)`` (golden.quant) for int8 ``X``
(M x K) and ``W`` (N x K), int32 ``b``, per-output-channel ``multiplier``/``shift``, with
N <= VL and M <= 32 (accumulator slots).  K is split into passes of VL columns whose
int32 products accumulate in the MXM accumulators (K > VL exercises that).  Data flow::

    MEM_E0 --constants (bytes, westward)--> VXM registers r0 (bias), r1..r3 (mult, shift, zp)
    MEM_W1 --W rows--> MXM_W0 (LW, IW)      MEM_W0 --X rows--> MXM_W0 (MVM, acc slot m)
    MXM_W0 --int32 (4 planes, eastward)--> VXM: REQUANT(ADD(acc, r0), r1) --int8--> MEM_E0

The program is generated as assembly text with every issue cycle computed from the ISA
latencies and the slice distances (the job of the compiler), then assembled and run.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from arch.asm import Schedule, assemble  # noqa: E402
from arch.config import TspConfig, get_config  # noqa: E402
from arch.isa import MXM_ACC_SLOTS, latency  # noqa: E402
from golden.machine import Machine, RunResult  # noqa: E402
from golden.quant import quantize_multiplier, requantize  # noqa: E402


@dataclass
class MatmulCase:
    x: np.ndarray  # int8 (M, K)
    w: np.ndarray  # int8 (N, K)
    b: np.ndarray  # int32 (N,)
    multiplier: np.ndarray  # int32 (N,)
    shift: np.ndarray  # int32 (N,)

    def expected(self) -> np.ndarray:
        acc = self.x.astype(np.int64) @ self.w.astype(np.int64).T + self.b
        return requantize(acc, self.multiplier, self.shift)


def random_case(m: int, k: int, n: int, seed: int = 0) -> MatmulCase:
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (m, k), dtype=np.int64).astype(np.int8)
    w = rng.integers(-127, 128, (n, k), dtype=np.int64).astype(np.int8)
    b = rng.integers(-2000, 2000, n).astype(np.int32)
    pairs = [quantize_multiplier(r) for r in rng.uniform(0.0005, 0.004, n)]
    return MatmulCase(x, w, b, np.array([p[0] for p in pairs], np.int32),
                      np.array([p[1] for p in pairs], np.int32))


def build(cfg: TspConfig, case: MatmulCase):
    """(assembly text, machine with data loaded, function reading Y back, the SRAM image:
    slice -> {address: vector} of every vector placed, zero ones included -- SRAM has no
    defined power-up contents, so a host must write everything the program reads)."""
    vl = cfg.vector_length
    m_rows, k = case.x.shape
    n_out = case.w.shape[0]
    if n_out > vl or m_rows > MXM_ACC_SLOTS:
        raise ValueError(f"need N <= VL={vl} and M <= {MXM_ACC_SLOTS}")
    passes = -(-k // vl)
    pos = {s.name: s.index for s in cfg.slices}
    mxm, mw, mx, vxm, mc = "MXM_W0", "MEM_W1", "MEM_W0", "VXM", "MEM_E0"
    l_rd, l_lw, l_mvm, l_vxm = (latency(x, cfg) for x in ("READ", "LW", "MVM", "VXM"))
    d_wm, d_xm = pos[mw] - pos[mxm], pos[mx] - pos[mxm]
    d_mv, d_cv, d_vo = pos[vxm] - pos[mxm], pos[mc] - pos[vxm], pos[mc] - pos[vxm]
    ybase = cfg.mem_depth  # outputs in bank 1 of MEM_E0, constants in bank 0

    # -- data placement
    mach = Machine(cfg)
    image: dict[str, dict[int, np.ndarray]] = {}

    def place(sl: str, addr: int, rows) -> None:
        rows = np.atleast_2d(np.asarray(rows)).astype(np.uint8)
        mach.write_mem(sl, addr, rows)
        for i, row in enumerate(rows):
            image.setdefault(sl, {})[addr + i] = row.copy()

    xp = np.zeros((m_rows, passes * vl), np.int8)
    xp[:, :k] = case.x
    wp = np.zeros((vl, passes * vl), np.int8)
    wp[:n_out, :k] = case.w
    for p in range(passes):
        place(mw, p * vl, wp[:, p * vl:(p + 1) * vl])
        place(mx, p * m_rows, xp[:, p * vl:(p + 1) * vl])
    consts = np.zeros((4, vl), np.int64)  # r0 bias, r1 multiplier, r2 shift, r3 zero point
    consts[0, :n_out], consts[1, :n_out], consts[2, :n_out] = case.b, case.multiplier, case.shift
    for byte in range(4):
        for r in range(4):
            place(mc, 4 * byte + r, (consts[r] >> (8 * byte)) & 0xFF)

    sch = Schedule(cfg)
    # -- phase A: VXM registers r0..r3 from 16 byte vectors (register r, byte k at 4k + r);
    # a register's next byte arrives 4 cycles after the previous = after its write (L = 3)
    sch.at(mc, 0, "READ 0, s5.W", n=15, stride=1)
    t0 = l_rd + d_cv
    for j in range(16):
        byte, r = divmod(j, 4)
        expr = "s5.W" if byte == 0 else f"OR(SHL(s5.W, {8 * byte}), r{r})"
        sch.at(vxm, t0 + j, f"VXM.u8 r{r}:i32 = {expr}")
    # -- phase B: per pass, VL weight rows (LW), IW, then M MVMs into accumulator slots 0..M-1
    # the MXM starts as soon as the first weight row can reach it (registers are ready first)
    t = max(t0 + 16 + 1, l_rd + d_wm)
    for p in range(passes):
        sch.at(mw, t - l_rd - d_wm, f"READ {p * vl}, s0.W", n=vl - 1, stride=1)
        sch.at(mxm, t, "LW 0, s0.W", n=vl - 1, stride=1)
        t_iw = t + vl - 1 + l_lw  # the last LW writes the shadow in this cycle
        sch.at(mxm, t_iw, "IW")
        t_mvm = t_iw + 1
        sch.at(mx, t_mvm - l_rd - d_xm, f"READ {p * m_rows}, s1.W", n=m_rows - 1, stride=1)
        flags = (", accum" if p else "") + (", emit=s0.E" if p == passes - 1 else "")
        sch.at(mxm, t_mvm, f"MVM s1.W, 0{flags}", n=m_rows - 1, stride=1)
        t = t_mvm + m_rows
    # -- phase C: requantise each emitted row and store it
    t_v = t_mvm + l_mvm + d_mv
    sch.at(vxm, t_v, "VXM.i32 s4.E:i8 = REQUANT(ADD(s0.E, r0), r1)", n=m_rows - 1)
    sch.at(mc, t_v + l_vxm + d_vo, f"WRITE s4.E, {ybase}", n=m_rows - 1, stride=1)

    text = sch.text()

    def result() -> np.ndarray:
        return mach.read_mem(mc, ybase, m_rows, np.int8)[:, :n_out].copy()

    return text, mach, result, image


def run(cfg: TspConfig | str, case: MatmulCase, trace: bool = False
        ) -> tuple[np.ndarray, RunResult, str]:
    cfg = get_config(cfg)
    text, mach, result, _ = build(cfg, case)
    mach.load_program(assemble(text, cfg, "matmul.s"))
    res = mach.run(max_cycles=100_000, trace=trace)
    return result(), res, text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="tiny")
    ap.add_argument("--m", type=int, default=4)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--asm", action="store_true", help="print the generated assembly")
    args = ap.parse_args(argv)
    cfg = get_config(args.config)
    case = random_case(args.m, args.k, args.n, args.seed)
    y, res, text = run(cfg, case)
    if args.asm:
        print(text)
    ok = np.array_equal(y, case.expected())
    print(f"config {cfg.name}: Y = requantize(X[{args.m}x{args.k}] @ W[{args.n}x{args.k}].T + b)"
          f" in {res.cycles} cycles; MXM MVMs {res.mxm_mvm_cycles}; "
          f"matches golden.quant: {ok}")
    print(y)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
