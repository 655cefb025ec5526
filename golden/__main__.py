"""``python -m golden``: build a synthetic quantised decoder block and report its error.

Examples::

    python -m golden --seq 16 --d-model 32 --heads 2 --d-ff 64 --seed 0
    python -m golden --seq 64 --d-model 128 --heads 4 --d-ff 512 --seeds 0-9 --json
    python -m golden --seed 3 --save vectors.npz

``--save`` writes an ``.npz`` with ``input.float``, ``input.q``, every parameter array of
:meth:`QuantBlock.parameter_arrays` (weights, biases, multipliers/shifts, tables, scales),
every integer intermediate as ``int.<name>`` and the outputs ``output.q``,
``output.float_ref`` (float64 reference) and ``output.float_ref_q`` (reference quantised
with the output scale).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from golden.block import error_metrics, make_block


def _seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part[1:]:
                lo, hi = (int(v) for v in part.split("-", 1))
                if lo > hi:
                    raise ValueError
                out.extend(range(lo, hi + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{part!r} in {text!r} is not a seed or a range LO-HI with LO <= HI "
                "(e.g. 0-9 or 0,3,5)") from None
    return out


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m golden", description=__doc__.splitlines()[0])
    ap.add_argument("--seq", type=int, default=16, help="sequence length (default 16)")
    ap.add_argument("--d-model", type=int, default=32, help="model width (default 32)")
    ap.add_argument("--heads", type=int, default=2, help="attention heads (default 2)")
    ap.add_argument("--d-ff", type=int, default=64, help="MLP hidden width (default 64)")
    ap.add_argument("--seed", type=int, default=0, help="weights/input seed (default 0)")
    ap.add_argument("--seeds", type=_seeds, default=None,
                    help="several seeds, e.g. 0-9 or 0,3,5 (overrides --seed; no --save)")
    ap.add_argument("--no-causal", action="store_true", help="disable the causal mask")
    ap.add_argument("--json", action="store_true", help="print one JSON object to stdout")
    ap.add_argument("--save", metavar="FILE.npz", help="write test vectors for testbenches")
    return ap


def _run(args: argparse.Namespace, seed: int) -> dict:
    block = make_block(seed, args.seq, args.d_model, args.heads, args.d_ff,
                       causal=not args.no_causal)
    x = block.example_input()
    m = error_metrics(block, x)
    rec = {"seed": seed, "seq_len": args.seq, "d_model": args.d_model, "n_heads": args.heads,
           "d_ff": args.d_ff, "causal": not args.no_causal, **m}
    if args.save:
        x_q = block.quantize_input(x)
        tr = block.forward_int(x_q, return_intermediates=True)
        y_f = block.forward_float(x)
        arrays = {"input.float": x, "input.q": x_q}
        arrays.update(block.parameter_arrays())
        arrays.update({f"int.{k}": v for k, v in tr.items()})
        arrays.update({"output.q": tr["y"], "output.float_ref": y_f,
                       "output.float_ref_q": block.quantize_output_reference(y_f)})
        path = Path(args.save)
        if path.suffix != ".npz":  # np.savez adds it; say the name it writes
            path = path.with_name(path.name + ".npz")
        if not path.parent.is_dir():
            raise ValueError(f"--save {args.save}: no directory {path.parent}")
        np.savez(path, **arrays)
        rec["saved"] = str(path)
    return rec


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.seeds is not None and args.save:
        print("error: --save needs a single --seed", file=sys.stderr)
        return 2
    seeds = args.seeds if args.seeds is not None else [args.seed]
    try:
        recs = [_run(args, s) for s in seeds]
    except (ValueError, TypeError, OverflowError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if len(recs) == 1:
        out = recs[0]
    else:
        out = {k: recs[0][k] for k in ("seq_len", "d_model", "n_heads", "d_ff", "causal")}
        out.update({
            "seeds": seeds,
            "cosine_vs_float": min(r["cosine_vs_float"] for r in recs),
            "max_abs_err_lsb": max(r["max_abs_err_lsb"] for r in recs),
            "frac_within_1lsb": min(r["frac_within_1lsb"] for r in recs),
            "aggregate": "cosine/frac: min over seeds; max_abs_err_lsb: max over seeds",
            "per_seed": recs,
        })
    if args.json:
        json.dump(out, sys.stdout)
        sys.stdout.write("\n")
        return 0
    causal = "causal" if not args.no_causal else "non-causal"
    print(f"block seq={args.seq} d_model={args.d_model} heads={args.heads} "
          f"d_ff={args.d_ff} {causal}")
    for r in recs:
        print(f"  seed {r['seed']:3d}: cosine_vs_float {r['cosine_vs_float']:.6f}  "
              f"max_abs_err_lsb {r['max_abs_err_lsb']}  "
              f"frac_within_1lsb {r['frac_within_1lsb']:.4f}  rel_rms_err {r['rel_rms_err']:.4f}")
    if len(recs) > 1:
        print(f"  min cosine {out['cosine_vs_float']:.6f}  min frac_within_1lsb "
              f"{out['frac_within_1lsb']:.4f}  max abs err {out['max_abs_err_lsb']} LSB")
    if args.save:
        print(f"  saved vectors to {recs[0]['saved']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
