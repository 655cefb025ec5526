"""Accuracy benchmark of the integer LLM path against the float64 reference (SmolLM2-135M).

``python -m golden.llm_accuracy [--json build/llm/accuracy.json]`` (``make llm-accuracy``):

* teacher-forced on ``golden/data/english.txt`` (public-domain English that ships with the
  project): hidden-state cosine int vs float at every layer over every position, top-1
  agreement, perplexity of both;
* greedy generation from 5 prompts, 16 tokens each, int vs float (KV-cache decode), with
  the decode speed of both;
* held out: the same figures on ``golden/data/heldout.txt`` (never used while designing the
  numerics); and, for comparison, the per-output-channel requantised weight form
  (``weights="row"``) on the main text.

Targets (issue 15): cosine >= 0.99 at every layer, top-1 >= 95 %, perplexity within 3 %,
>= 3 of 5 greedy continuations equal for 16 tokens.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from golden.attention import KVCache
from golden.llm import load_model
from golden.vocab import argmax_int

DATA = Path(__file__).resolve().parent / "data"
PROMPTS = ["The capital of France is", "Once upon a time, there was a little",
           "The three primary colors are", "Water boils at a temperature of",
           "def fibonacci(n):\n"]
TARGETS = {"min_layer_cosine": 0.99, "top1": 0.95, "ppl_rel": 0.03, "greedy_equal": 3}


def perplexity(logits, ids) -> float:
    lg = logits[:-1] - logits[:-1].max(axis=1, keepdims=True)
    lp = lg - np.log(np.exp(lg).sum(axis=1, keepdims=True))
    return float(np.exp(-lp[np.arange(len(ids) - 1), np.asarray(ids[1:])].mean()))


def cosine_rows(a, b) -> np.ndarray:
    return np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def teacher_forced(model, ids, log, label, lf=None, hf=None) -> dict:
    if lf is None:
        hf = []
        t0 = time.perf_counter()
        lf = model.forward_float(ids, hidden=hf)
        log(f"  [{label}] float forward {len(ids)} tokens: {time.perf_counter() - t0:.1f} s")
    hi = []
    t0 = time.perf_counter()
    li = model.forward_int(ids, hidden=hi)
    log(f"  [{label}] int forward {len(ids)} tokens: {time.perf_counter() - t0:.1f} s")
    layers = []
    for a, b in zip(hf, hi, strict=True):
        c = cosine_rows(a, b)
        flat = float(np.sum(a * b) / (np.linalg.norm(a) * np.linalg.norm(b)))
        layers.append({"cosine": flat, "min_position_cosine": float(c.min())})
    pf, pi = perplexity(lf, ids), perplexity(li, ids)
    return {"tokens": len(ids), "positions": len(ids),
            "layers": layers,
            "min_layer_cosine": min(x["cosine"] for x in layers),
            "min_position_cosine": min(x["min_position_cosine"] for x in layers),
            "top1": float(np.mean(lf.argmax(1) == li.argmax(1))),
            "ppl_float": pf, "ppl_int": pi, "ppl_rel": abs(pi - pf) / pf,
            "logit_err_std": float(np.std(li - lf))}, lf, hf


def greedy(model, log, n_tokens=16) -> dict:
    rows, t_int, t_float, n_int, n_float = [], 0.0, 0.0, 0, 0
    for p in PROMPTS:
        ids = model.tokenize(p)
        outs = {}
        for int8 in (False, True):
            cache, seq, out = KVCache(model.config.n_layers), list(ids), []
            for step in range(n_tokens):
                t0 = time.perf_counter()
                if int8:
                    lg, _ = model.forward_int(seq if step == 0 else [out[-1]], cache,
                                              return_int=True)
                    nxt = int(argmax_int(lg[-1]))
                else:
                    nxt = int(np.argmax(model.forward_float(seq if step == 0 else [out[-1]],
                                                            cache)[-1]))
                dt = time.perf_counter() - t0
                if step:  # decode steps only (step 0 is the prompt prefill)
                    if int8:
                        t_int, n_int = t_int + dt, n_int + 1
                    else:
                        t_float, n_float = t_float + dt, n_float + 1
                out.append(nxt)
            outs[int8] = out
        pairs = enumerate(zip(outs[False], outs[True], strict=True))
        k = next((i for i, (a, b) in pairs if a != b), n_tokens)
        rows.append({"prompt": p, "float": model.detokenize(outs[False]),
                     "int": model.detokenize(outs[True]), "equal": outs[False] == outs[True],
                     "first_difference": k})
        log(f"  {'=' if k == n_tokens else k:>2} {p!r}: float {rows[-1]['float']!r}"
            f" | int {rows[-1]['int']!r}")
    return {"prompts": rows, "tokens": n_tokens,
            "equal": sum(r["equal"] for r in rows),
            "int_decode_tokens_per_s": n_int / t_int if t_int else None,
            "float_decode_tokens_per_s": n_float / t_float if t_float else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m golden.llm_accuracy")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--json", default="build/llm/accuracy.json")
    ap.add_argument("--no-heldout", action="store_true")
    a = ap.parse_args(argv)

    def log(msg):
        print(msg, flush=True)

    try:
        model = load_model(a.model)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    texts = ["english.txt"] + ([] if a.no_heldout else ["heldout.txt"])
    tokens = {name: model.tokenize((DATA / name).read_text()) for name in texts}
    for name, t in tokens.items():  # teacher forcing runs each whole text at once
        if len(t) > model.config.context:
            print(f"error: {DATA / name} is {len(t)} tokens, over the context length "
                  f"{model.config.context} of {model.path}: the benchmark needs a model whose "
                  f"context holds the whole text", file=sys.stderr)
            return 2
    ids = tokens["english.txt"]
    log(f"model {model.path.name}: {model.config}")
    res = {"model": str(model.path.name), "weights": model.weights, "text": "english.txt",
           "targets": TARGETS}
    res["teacher_forced"], lf, hf = teacher_forced(model, ids, log, "english, gguf weights")
    res["greedy"] = greedy(model, log)
    if not a.no_heldout:
        res["heldout_text"] = teacher_forced(model, tokens["heldout.txt"], log,
                                             "heldout, gguf weights")[0]
        row = load_model(a.model, weights="row")
        res["row_weights"] = teacher_forced(row, ids, log, "english, per-channel row weights",
                                                    lf, hf)[0]
    tf, g = res["teacher_forced"], res["greedy"]
    checks = {"min_layer_cosine": tf["min_layer_cosine"] >= TARGETS["min_layer_cosine"],
              "top1": tf["top1"] >= TARGETS["top1"],
              "ppl_rel": tf["ppl_rel"] <= TARGETS["ppl_rel"],
              "greedy_equal": g["equal"] >= TARGETS["greedy_equal"]}
    res["pass"] = checks
    log("")
    log(f"hidden-state cosine, worst layer: {tf['min_layer_cosine']:.6f} (worst single "
        f"position {tf['min_position_cosine']:.6f}) over {tf['positions']} positions   "
        f"target >= 0.99  {'PASS' if checks['min_layer_cosine'] else 'FAIL'}")
    log(f"teacher-forced top-1 agreement: {100 * tf['top1']:.2f} % over {tf['tokens']} tokens"
        f"   target >= 95 %  {'PASS' if checks['top1'] else 'FAIL'}")
    log(f"perplexity: int {tf['ppl_int']:.4f} vs float {tf['ppl_float']:.4f} "
        f"({100 * tf['ppl_rel']:.3f} %)   target within 3 %  "
        f"{'PASS' if checks['ppl_rel'] else 'FAIL'}")
    log(f"greedy 16-token continuations equal: {g['equal']}/5   target >= 3  "
        f"{'PASS' if checks['greedy_equal'] else 'FAIL'}")
    log(f"decode speed (numpy, this machine): int {g['int_decode_tokens_per_s']:.2f} tok/s, "
        f"float64 {g['float_decode_tokens_per_s']:.2f} tok/s")
    for key in ("heldout_text", "row_weights"):
        if key in res:
            h = res[key]
            log(f"{key}: worst layer cosine {h['min_layer_cosine']:.6f}, top-1 "
                f"{100 * h['top1']:.2f} %, perplexity {h['ppl_int']:.4f} vs {h['ppl_float']:.4f}")
    out = Path(a.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    log(f"wrote {out}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
