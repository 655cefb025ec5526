"""The quantised attention + MLP block (`golden.block.QuantBlock`) as a graph of ops.

`block_graph` writes the block as data: the same op kinds as any other graph
(`compiler.graph.OPS`), compiled by the same `lower_graph`:

    x8    = requant(x)                    per-lane pairs (the SmoothQuant narrow)
    q     = linear(x8; wq, heads=H)       per-head outputs (what attention installs)
    k     = linear(x8; wk)
    v     = linear(x8; wv, heads=H)       (rows with ``v_transpose``: V^T by MVMs)
    ctx   = attention(q, k, v)            the block's softmax attention (causal or not)
    h_sum = linear(ctx, x; wo)            x + rq(Wo ctx + bo), int32
    h     = requant(h_sum)                per-lane pairs
    gelu  = linear(h; w1, table=GELU)     the GELU Gather fused (ff1 kept as ``ff1``)
    y     = linear(gelu, h_sum; w2)       h_sum + rq(W2 gelu + b2), int32

A *plan* says which MXM does what (`PLANS`: the products, and the attention's scores,
row sums, transposes and context); the graph carries it as placement: each product's
``mxm`` (its output tiles spread over that MXM's hemisphere), the attention's roles, and
the side each tensor lives on (next to the MXM that reads it).  The compiler
(`compiler.compiled.compile_block`) tries the plans and keeps the fastest schedule.
"""

from __future__ import annotations

from arch.config import TspConfig

from .errors import CompileError
from .graph import Graph, Node
from .lowerings.block_attention import check_seq_len, other

MW, ME = "MXM_W0", "MXM_E0"

#: which MXM does what (an operand an MXM reads from SRAM lives on the MXM's side).
#: The compiler tries these in order and keeps the fastest schedule; the first ones
#: balance the projections over both MXMs and give the transposes and the context
#: product different MXMs (P rows go from one to the other on the stream), which also
#: keeps the accumulator slots of the context MXM free when seq_len = 32 = slots.
PLANS = (
    {"q": ME, "k": MW, "v": MW, "scores": MW, "sums": ME, "trans": ME, "ctx": MW,
     "wo": ME, "w1": MW, "w2": ME},
    {"q": MW, "k": ME, "v": MW, "scores": ME, "sums": ME, "trans": ME, "ctx": MW,
     "wo": MW, "w1": ME, "w2": MW},
    {"q": MW, "k": MW, "v": ME, "scores": ME, "sums": ME, "trans": ME, "ctx": MW,
     "wo": MW, "w1": ME, "w2": MW},
    {"q": MW, "k": ME, "v": ME, "scores": MW, "sums": ME, "trans": MW, "ctx": MW,
     "wo": ME, "w1": MW, "w2": ME},
    {"q": MW, "k": MW, "v": ME, "scores": MW, "sums": ME, "trans": ME, "ctx": ME,
     "wo": MW, "w1": ME, "w2": MW},
)


def side(mxm: str) -> str:
    return "W" if mxm.startswith("MXM_W") else "E"


def check_block(block, cfg: TspConfig) -> None:
    """Refuse a block no plan compiles on ``cfg`` (CompileError naming what is wrong)."""
    if block.n_heads < 1 or block.d_model % block.n_heads:
        raise CompileError(f"d_head: d_model={block.d_model} is not a multiple of "
                           f"n_heads={block.n_heads}", "shape", True)
    for name, lin in block.linears().items():
        want = {"wq": (block.d_model, block.d_model), "wk": (block.d_model, block.d_model),
                "wv": (block.d_model, block.d_model), "wo": (block.d_model, block.d_model),
                "w1": (block.d_ff, block.d_model), "w2": (block.d_model, block.d_ff)}[name]
        if lin.weight.shape != want:
            raise CompileError(f"{name}: weight shape {lin.weight.shape}, expected {want} "
                               f"for d_model={block.d_model}, d_ff={block.d_ff}", "shape", True)
    check_seq_len(cfg, block.seq_len)


def _linear(lin, mxm: str, **extra) -> dict:
    return {"weight": lin.weight, "bias": lin.bias, "multiplier": lin.multiplier,
            "shift": lin.shift, "mxm": mxm, **extra}


def attention_attrs(block, plan: dict) -> dict:
    """The attention node's attributes: the block's integer parameters, its tables and
    the plan's MXM roles."""
    return {"n_heads": block.n_heads, "causal": block.causal,
            "score_multiplier": block.score_multiplier, "score_shift": block.score_shift,
            "ctx_multiplier": block.ctx_multiplier, "ctx_shift": block.ctx_shift,
            "exp_table": block.exp_table, "recip_table": block.recip_table,
            "mxm_scores": plan["scores"], "mxm_sums": plan["sums"],
            "mxm_trans": plan["trans"], "mxm_ctx": plan["ctx"]}


#: the products after the attention: `block_graph`'s ``spread_mlp`` spreads them
MLP = ("wo", "w1", "w2")


def _nodes(block, p: dict, attention: Node, v_heads: bool, spread_only=(), **product
           ) -> tuple[Node, ...]:
    """The block's nodes around its attention node; ``product``: extra attrs of every
    product (``spread``); ``spread_only``: the products (``"wq"`` ... ``"w2"``) whose
    output tiles go to every MXM in turn."""
    H = block.n_heads
    sums = side(p["sums"])
    lins = block.linears()

    def lin(q, mxm, **extra):
        attrs = dict(product, **extra)
        if next(k for k, v in lins.items() if v is q) in spread_only:
            attrs["spread"] = "all"
        return _linear(q, mxm, **attrs)

    return (
        Node("x8", "requant", ("x",), {"multiplier": block.x8_multiplier,
                                       "shift": block.x8_shift}, 1),
        Node("q", "linear", ("x8",), lin(block.wq, p["q"], heads=H), 1),
        Node("k", "linear", ("x8",), lin(block.wk, p["k"]), 1),
        Node("v", "linear", ("x8",), lin(block.wv, p["v"], **({"heads": H} if v_heads
                                                               else {})), 1),
        attention,
        Node("h_sum", "linear", ("ctx", "x"), lin(block.wo, p["wo"]), 4),
        Node("h", "requant", ("h_sum",), {"multiplier": block.h8_multiplier,
                                          "shift": block.h8_shift}, 1),
        Node("gelu", "linear", ("h",), lin(block.w1, p["w1"], table=block.gelu_table,
                                           table_side=other(sums), keep_pre="ff1"), 1),
        Node("y", "linear", ("gelu", "h_sum"), lin(block.w2, p["w2"]), 4),
    )


def block_graph(block, plan: dict | None = None, *, v_transpose: bool = False,
                x8_near_input: bool = False, scores_after_inputs: bool = False,
                spread_mlp: bool = False) -> Graph:
    """``block`` (a `QuantBlock`) as a `Graph` placed by ``plan`` (default ``PLANS[0]``).

    ``v_transpose``: v as rows and ``V_h^T`` made by unit-vector MVMs (else v per head,
    installed as LWT columns); ``x8_near_input``: the int8 copy of x on the input's side
    (else on the softmax sums' side, read across the VXM by the far MXM);
    ``scores_after_inputs``: the attention's score slices chosen after the input is placed
    (else with its tables, before); ``spread_mlp``: the products after the attention
    (`MLP`) spread over every MXM, the plan's first (each weight tile beside its MXM), so
    that W1's tiles are done on both sides by the time W2 starts, and their inputs (``h``,
    ``gelu``) dealt over both sides' slices: each side's read ports then carry half the
    inputs beside its own MXM's weights."""
    p = dict(PLANS[0], **(plan or {}))
    sums = side(p["sums"])
    attn = Node("ctx", "attention", ("q", "k", "v"), dict(
        attention_attrs(block, p), scores_after_inputs=scores_after_inputs), 1)
    place = {"x": other(sums), "x8": other(sums) if x8_near_input else sums,
             "q": side(p["scores"]), "k": side(p["scores"]), "v": side(p["ctx"]),
             "ctx": side(p["wo"]), "h": side(p["w1"]), "gelu": side(p["w2"])}
    if spread_mlp:  # the inputs of W1 and W2, read by both MXMs, dealt over both sides
        place.update(h="both", gelu="both")
    return Graph({"x": (block.seq_len, block.d_model, 4)},
                 _nodes(block, p, attn, not v_transpose, MLP if spread_mlp else ()),
                 ("y",), place)


def decode_graph(block, max_context: int, plan: dict | None = None, *,
                 spread: bool = True, x8_near_input: bool = False) -> Graph:
    """One decode step of ``block``: one row in, attention over a KV cache of
    ``max_context`` positions (`kv_attention`: the program appends the step's k and v at
    the run-time position), one row out.  ``spread``: every product's output tiles go to
    every MXM in turn (one row per step makes a product a stream of weight rows), else to
    the planned MXM's hemisphere as in the prefill; ``x8_near_input`` as `block_graph`."""
    p = dict(PLANS[0], **(plan or {}))
    sums = side(p["sums"])
    attn = Node("ctx", "kv_attention", ("q", "k", "v"),
                dict(attention_attrs(block, p), max_context=max_context), 1)
    place = {"x": other(sums), "x8": other(sums) if x8_near_input else sums,
             "q": side(p["scores"]), "ctx": side(p["wo"]),
             "h": side(p["w1"]), "gelu": side(p["w2"])}
    return Graph({"x": (1, block.d_model, 4)},
                 _nodes(block, p, attn, True, **({"spread": "all"} if spread else {})),
                 ("y",), place)
