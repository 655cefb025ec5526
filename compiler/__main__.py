"""``python -m compiler``: compile the quantised block, run it on the machine model, check.

Example::

    python -m compiler --config small --seq 16 --d-model 32 --heads 2 --d-ff 64 --seed 0 \\
        [--no-causal] [--out build/compile] [--plot] [--json]

Compiles ``golden.block.make_block(seed, ...)``, runs the program on
``golden.machine.Machine`` with the block's example input, checks the output and every
intermediate kept in SRAM bit for bit against ``QuantBlock.forward_int`` and the
predicted cycle count against the model's, prints the figures, writes ``prog.bin``,
``schedule.json``, ``layout.json``, ``sram_image.npz`` (what the host writes into SRAM),
``expected.npz`` (x_q, golden y_q) and with ``--plot`` ``schedule.png`` to ``--out``.
Exit status 1 on any mismatch (naming the first differing element), 2 for an unknown
config, an invalid shape or seed, or a block that cannot be compiled for the config.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from arch.config import get_config
from golden.block import make_block

from . import check_seq_len, compile_block
from .errors import CompileError


def first_difference(name: str, got: np.ndarray, want: np.ndarray) -> str | None:
    if got.shape != want.shape:
        return f"{name}: shape {got.shape}, golden {want.shape}"
    bad = np.argwhere(got.astype(np.int64) != want.astype(np.int64))
    if not len(bad):
        return None
    idx = tuple(int(i) for i in bad[0])
    return (f"{name}{list(idx)}: compiled program {int(got[idx])}, golden forward_int "
            f"{int(want[idx])} ({len(bad)} of {want.size} elements differ)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m compiler", description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="small")
    ap.add_argument("--seq", type=int, default=16)
    ap.add_argument("--d-model", type=int, default=32)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--d-ff", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-causal", action="store_true")
    ap.add_argument("--out", default="build/compile")
    ap.add_argument("--plot", action="store_true", help="also write schedule.png")
    ap.add_argument("--json", action="store_true", help="print the statistics as JSON")
    ap.add_argument("--effort", choices=("best", "fast"), default="best")
    a = ap.parse_args(argv)
    shape = (f"seq {a.seq}, d_model {a.d_model}, heads {a.heads}, d_ff {a.d_ff}, "
             f"{'non-causal' if a.no_causal else 'causal'}, seed {a.seed}")
    out = Path(a.out)
    if out.exists() and not out.is_dir():  # before the compile and the run, not after
        print(f"error: --out {a.out}: exists and is not a directory", file=sys.stderr)
        return 2
    try:
        cfg = get_config(a.config)
        check_seq_len(cfg, a.seq)  # before calibration, which is quadratic in seq
        blk = make_block(a.seed, a.seq, a.d_model, a.heads, a.d_ff, causal=not a.no_causal)
    except CompileError as exc:  # a sequence length no compilation can take
        print(f"error: cannot compile the block ({shape}) for config {cfg.name!r}: {exc}",
              file=sys.stderr)
        return 2
    except ValueError as exc:  # unknown config, bad shape or seed
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        cb = compile_block(blk, cfg, effort=a.effort)
    except CompileError as exc:
        print(f"error: cannot compile the block ({shape}) for config {cfg.name!r}: {exc}",
              file=sys.stderr)
        return 2
    x_q = blk.quantize_input(blk.example_input())
    t0 = time.time()
    y_q, res, inter = cb.run_on_model(x_q)
    t_run = time.time() - t0
    golden = blk.trace(x_q)
    problems = []
    if res.cycles != cb.cycles:
        problems.append(f"cycles: predicted {cb.cycles}, machine model {res.cycles}")
    if res.busy != cb.busy:
        diff = {k: (cb.busy[k], res.busy[k]) for k in res.busy if res.busy[k] != cb.busy[k]}
        problems.append(f"busy cycles differ (predicted, model): {diff}")
    for name, got in [("y", y_q)] + sorted(inter.items()):
        msg = first_difference(name, got, golden[name])
        if msg:
            problems.append(msg)
    files = cb.write(a.out, plot=a.plot, x_q=x_q)
    st = cb.stats()
    if a.json:
        print(json.dumps({**st, "model_cycles": res.cycles, "ok": not problems,
                          "problems": problems, "files": {k: str(v) for k, v in files.items()}},
                         indent=1))
    else:
        b = cb.bounds
        print(f"compiled block ({shape}) for {cfg.summary()}")
        print(f"  cycles            predicted {cb.cycles}, machine model {res.cycles}"
              f" ({'equal' if res.cycles == cb.cycles else 'DIFFERENT'}; model run "
              f"{t_run:.2f} s, compile {cb.compile_seconds:.2f} s)")
        print(f"  lower bound       {b.best} = max(MVMs/MXMs {b.mxm}, busiest MXM issue "
              f"{b.mxm_slots}, VXM issue {b.vxm}, busiest queue {b.queue}, dependency "
              f"path {b.path}); cycles / bound = {cb.ratio:.2f}")
        mv = ", ".join(f"{k} {v}" for k, v in cb.emitted.mvm.items())
        print(f"  MXM utilisation   {100 * cb.mxm_utilisation:.1f}% useful ({cb.useful_mvms} "
              f"matmul MVMs); {100 * cb.mxm_utilisation_all:.1f}% counting overhead MVMs "
              f"{cb.overhead_mvms} (per MXM: {mv})")
        print("  busy % by kind    " + ", ".join(f"{k} {v}%" for k, v in
                                                 st["busy_pct_by_kind"].items()))
        print("  instruction words per queue (of its depth): " +
              ", ".join(f"{k} {v}/{cfg.imem_depth_of(k)}" for k, v in cb.words.items()))
        vl = cfg.vector_length
        print(f"  SRAM              {st['sram_vectors_peak']} of {st['sram_vectors']} vectors "
              f"at peak ({st['sram_vectors_peak'] * vl / 1024:.1f} of "
              f"{st['sram_vectors'] * vl / 1024:.1f} KiB); variant {cb.variant}")
        others = sorted(k for k in inter if k != "y")
        kept = (f" and {len(others)} intermediates kept in SRAM ({', '.join(others)})"
                if others else "")
        print(f"  checked           y{kept} against forward_int")
        print("  files             " + ", ".join(str(p) for p in files.values()))
    if problems:
        for p in problems:
            print(f"MISMATCH: {p}", file=sys.stderr)
        return 1
    if not a.json:
        print("OK: bit-exact, predicted cycles == machine model cycles")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
