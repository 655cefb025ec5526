"""The quantised block on real transformer layers: SmolLM2-135M weights, real inputs.

Synthetic blocks have no outliers; real layers do (a few channels 10-15x the rest).  This
check puts a real llama layer into the block's structure and measures
``golden.block.error_metrics`` on held-out real inputs:

* weights: the layer's q/k/v/output and up/down projections, the k/v heads repeated to
  the query heads (grouped-query -> multi-head), the RMSNorm gains folded into the weight
  columns they feed, GELU in place of SwiGLU, biases ``N(0, 0.02**2)``;
* inputs: the layer's real residual-stream input (float model, text from
  ``golden/data``), each row RMS-normalised (the block has no norm);
* calibration on the first ``--calib`` sequences, metrics on the next ``--test``.

``python -m golden.real_layer [--layers 1,5,15,29] [--seq 32] [--json FILE]`` (needs the
models extra: ``make models``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from golden import block as B

DATA = Path(__file__).parent / "data"


def layer_params(model, layer: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Float block parameters (PyTorch layout) from one llama layer of ``model``."""
    cfg, L = model.config, model.layers[layer]
    rep, hd = cfg.n_heads // cfg.n_kv_heads, cfg.head_dim

    def heads(w):  # (n_kv * hd, d) -> (n_heads * hd, d)
        return np.repeat(w.reshape(cfg.n_kv_heads, hd, -1), rep, axis=0).reshape(-1, w.shape[1])

    g1, g2 = (np.asarray(getattr(L[k], "gain", L[k]), np.float64)
              for k in ("attn_norm", "ffn_norm"))
    p = {"wq": L["wq"] * g1, "wk": heads(L["wk"]) * g1, "wv": heads(L["wv"]) * g1,
         "wo": L["wo"], "w1": L["w_up"] * g2, "w2": L["w_down"]}
    rng = np.random.default_rng([seed, layer])
    for k in ("q", "k", "v", "o", "1", "2"):
        p["b" + k] = 0.02 * rng.standard_normal(p["w" + k].shape[0])
    return p


def layer_inputs(model, layer: int, chunks: list[list[int]]) -> np.ndarray:
    """``(len(chunks), seq, d_model)``: each chunk's residual stream entering ``layer``,
    rows RMS-normalised."""
    out = []
    for ids in chunks:
        hidden: list = []
        model.forward_float(ids, hidden=hidden)
        x = hidden[layer - 1] if layer > 0 else model.forward_embedding(ids)
        out.append(x / np.sqrt(np.mean(x**2, axis=-1, keepdims=True) + 1e-5))
    return np.stack(out)


def run(model_name: str, layers: list[int], seq: int, n_calib: int, n_test: int,
        log=print) -> dict:
    from golden.llm import load_model

    m = load_model(model_name)
    if seq > m.config.context:
        raise ValueError(f"seq {seq} is over the model's context length {m.config.context}")
    ids = m.tokenize((DATA / "english.txt").read_text())
    need = (n_calib + n_test) * seq
    if len(ids) < need:
        raise ValueError(f"english.txt has {len(ids)} tokens, {need} needed")
    chunks = [ids[i * seq:(i + 1) * seq] for i in range(n_calib + n_test)]
    res = {"model": model_name, "seq": seq, "calibration_sequences": n_calib,
           "test_sequences": n_test, "layers": {}}
    for layer in layers:
        if not 1 <= layer < m.config.n_layers:
            raise ValueError(f"layer {layer} out of range 1..{m.config.n_layers - 1}")
        xs = layer_inputs(m, layer, chunks)
        blk = B.quantize_block(layer_params(m, layer), xs[:n_calib], m.config.n_heads, True)
        mets = [B.error_metrics(blk, x) for x in xs[n_calib:]]
        cos = [r["cosine_vs_float"] for r in mets]
        mx = np.abs(xs).max(axis=(0, 1))
        rec = {"cosine_min": min(cos), "cosine_mean": float(np.mean(cos)),
               "frac_within_1lsb_min": min(r["frac_within_1lsb"] for r in mets),
               "input_channel_max_over_median": float(mx.max() / np.median(mx))}
        res["layers"][str(layer)] = rec
        log(f"layer {layer:2d}: cosine {rec['cosine_min']:.5f}..{max(cos):.5f}  "
            f"(largest input channel {rec['input_channel_max_over_median']:.1f}x the median)")
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m golden.real_layer",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--layers", default="1,5,15,29", help="comma-separated layer indices")
    ap.add_argument("--seq", type=int, default=32)
    ap.add_argument("--calib", type=int, default=4)
    ap.add_argument("--test", type=int, default=4)
    ap.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    a = ap.parse_args(argv)
    for opt in ("seq", "calib", "test"):
        if getattr(a, opt) < 1:
            ap.error(f"--{opt} must be >= 1, got {getattr(a, opt)}")
    try:
        layers = [int(t) for t in a.layers.split(",")]
    except ValueError:
        ap.error(f"--layers must be comma-separated layer indices, got {a.layers!r}")
    try:
        res = run(a.model, layers, a.seq, a.calib, a.test)
    except (ValueError, FileNotFoundError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
