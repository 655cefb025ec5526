"""compiler.graph: a model as data, compiled op by op, run on the machine model and
compared with the same graph evaluated by the golden functions."""

from __future__ import annotations

import numpy as np
import pytest

from arch.config import get_config
from compiler.errors import CompileError
from compiler.graph import Graph, Node, compile_graph, evaluate
from golden import tables


def mlp_graph(rng, rows: int, d: int, f: int) -> Graph:
    """x (int32 stream) -> x8 -> W1 -> requant -> GELU table -> W2 -> y = x + rq(.)."""
    def pairs(n, lo, hi):
        return {"multiplier": rng.integers(2**30, 2**31 - 1, n), "shift": rng.integers(lo, hi, n)}
    w1 = rng.integers(-127, 128, (f, d)).astype(np.int8)
    w2 = rng.integers(-127, 128, (d, f)).astype(np.int8)
    return Graph(
        inputs={"x": (rows, d, 4)},
        nodes=(
            Node("x8", "requant", ("x",), pairs(d, -14, -10), out_bytes=1),
            Node("u", "matmul", ("x8",), {"weight": w1}),
            Node("u8", "requant", ("u",), pairs(f, -14, -10), out_bytes=1),
            Node("g", "lookup", ("u8",), {"table": tables.gelu_table(0.05, 0.04)}, out_bytes=1),
            Node("m", "matmul", ("g",), {"weight": w2}),
            Node("y", "add", ("x", "m"), pairs(d, -2, 2)),
        ),
        outputs=("y", "g"),
    )


@pytest.mark.parametrize(("config", "rows", "d", "f"), [
    ("tiny", 4, 24, 40),  # widths beyond VL = 16, partial tiles
    ("small", 8, 64, 96),  # VL = 32
])
def test_graph_bit_exact_and_cycle_exact(config, rows, d, f, base_seed):
    print(f"seed={base_seed} {config} rows={rows} d={d} f={f}")
    rng = np.random.default_rng([base_seed, rows, d, f])
    g = mlp_graph(rng, rows, d, f)
    x = rng.integers(-(2**24), 2**24, (rows, d))
    cg = compile_graph(g, config)
    out, cycles = cg.run_on_model({"x": x})
    want = evaluate(g, {"x": x})
    assert cycles == cg.cycles
    for name in g.outputs:
        bad = np.argwhere(out[name] != want[name])[:4]
        assert np.array_equal(out[name], want[name]), (name, bad)
    assert np.unique(want["g"]).size > 8  # the table lookup saw many different codes


def test_graph_errors_name_the_node():
    w = np.zeros((8, 16), np.int8)
    with pytest.raises(CompileError, match=r"node 'y': inputs \['z'\] are not defined"):
        Graph({"x": (2, 16, 1)}, (Node("y", "matmul", ("z",), {"weight": w}),), ("y",)).shapes()
    with pytest.raises(CompileError, match=r"node 'y': unknown op kind 'conv'"):
        Graph({"x": (2, 16, 1)}, (Node("y", "conv", ("x",)),), ("y",)).shapes()
    with pytest.raises(CompileError, match=r"node 'y' \(matmul\): weight must be int8 \(N, 16\)"):
        Graph({"x": (2, 16, 1)}, (Node("y", "matmul", ("x",), {"weight": w.T.copy()}),),
              ("y",)).shapes()
    with pytest.raises(CompileError, match=r"node 'y' \(matmul\): input must be int8"):
        compile_graph(Graph({"x": (2, 16, 4)}, (Node("y", "matmul", ("x",), {"weight": w}),),
                            ("y",)), get_config("tiny"))


def _req(width=16, out_bytes=4, **attrs):
    a = {"multiplier": np.full(width, 5), "shift": np.zeros(width, int), **attrs}
    return Graph({"a": (2, width, 4)}, (Node("y", "requant", ("a",), a, out_bytes),), ("y",))


@pytest.mark.parametrize("graph, message", [
    # constants the golden refuses ran wrapped to 32 bits or truncated on the machine
    (_req(multiplier=np.full(16, 2**32 + 2**30)),
     r"multiplier out of range \[0, 2147483647\] \(got 5368709120\.\.5368709120\)"),
    (_req(multiplier=np.full(16, 1.9e9)), r"multiplier must be integers, got float64"),
    (_req(shift=np.full(16, 40)), r"shift out of range \[-31, 30\]"),
    (_req(multiplier=np.full(16, -1)), r"multiplier out of range"),
    (Graph({"a": (2, 16, 1)}, (Node("y", "linear", ("a",), {
        "weight": np.ones((16, 16), np.int8), "bias": np.full(16, 2**32 + 5),
        "multiplier": np.full(16, 5), "shift": np.zeros(16, int)}),), ("y",)),
     r"\(linear\): bias out of range \[-2147483648, 2147483647\]"),
    # widths the lowering cannot take (were an AssertionError or a slice-count message)
    (Graph({"a": (2, 16, 1)}, (Node("y", "matmul", ("a",),
                                    {"weight": np.ones((16, 16), np.int8)}, 1),), ("y",)),
     r"\(matmul\): the output is the int32 sums: out_bytes must be 4, got 1"),
    (Graph({"a": (2, 16, 1), "b": (2, 16, 1)}, (Node("y", "add", ("a", "b"), {}, 1),),
           ("y",)), r"\(add\): operands must be int32 \(4 bytes\), got 1 and 1 bytes"),
    (_req(out_bytes=3), r"\(requant\): out_bytes must be 1, 2 or 4, got 3"),
])
def test_graph_constants_and_widths_are_checked(graph, message):
    """What the graph's golden evaluation refuses, or the lowering cannot take, is a
    CompileError naming the node before anything is lowered."""
    with pytest.raises(CompileError, match=r"^node 'y' .*" + message):
        compile_graph(graph, "tiny")


def test_scaled_ops_check_bits_and_positions():
    x = {"x": (2, 16, 4), "x.e": (2, 16, 2)}
    for bits in (0, 24, 40, 16.0):
        g = Graph(x, (Node("y", "narrow", ("x",), {"bits": bits}),), ("y",))
        with pytest.raises(CompileError, match=r"bits must be an int in 2\.\.16 or 25\.\.32"):
            compile_graph(g, "tiny")
    r = {"x": (2, 16, 2), "x.e": (2, 16, 2)}
    g = Graph(r, (Node("y", "rope", ("x",), {"heads": 2, "positions": np.array([3])}),),
              ("y",))
    with pytest.raises(CompileError, match=r"positions must be 2 ints >= 0 \(one per row\)"):
        compile_graph(g, "tiny")


def random_graph(rng, cfg) -> tuple[Graph, dict]:
    """A random chain of op kinds over random widths (partial tiles included), with a
    residual add back to an earlier int32 tensor of the same shape where one exists."""
    vl = cfg.vector_length
    rows = int(rng.integers(1, 6))
    width = int(rng.integers(1, 3 * vl))
    x = rng.integers(-(2**20), 2**20, (rows, width))
    nodes, shapes, k = [], {"x": (width, 4)}, 0
    cur = "x"
    for _ in range(int(rng.integers(2, 6))):
        w, nb = shapes[cur]
        name = f"t{k}"
        k += 1
        if nb != 1:  # narrow to int8 first (a matrix or table needs int8)
            nodes.append(Node(name, "requant", (cur,), {
                "multiplier": rng.integers(2**30, 2**31 - 1, w),
                "shift": rng.integers(-16, -8, w) if nb == 4 else rng.integers(-6, 0, w)},
                out_bytes=1))
        else:
            kind = rng.choice(["matmul", "linear", "lookup"])
            if kind in ("matmul", "linear"):
                # often back to the stream's width, so that a residual add can follow
                n_out = width if rng.random() < 0.5 else int(rng.integers(1, 3 * vl))
                attrs = {"weight": rng.integers(-127, 128, (n_out, w)).astype(np.int8)}
                ob = 4
                if kind == "linear":  # bias + requantise fused, to int8 or int32
                    ob = int(rng.choice([1, 4]))
                    attrs.update(bias=rng.integers(-(2**16), 2**16, n_out),
                                 multiplier=rng.integers(2**30, 2**31 - 1, n_out),
                                 shift=rng.integers(-14, -8, n_out) if ob == 1
                                 else rng.integers(-2, 1, n_out))
                nodes.append(Node(name, kind, (cur,), attrs, out_bytes=ob))
                w, nb = n_out, ob
            else:
                nodes.append(Node(name, "lookup", (cur,), {
                    "table": rng.integers(-128, 128, 256)}, out_bytes=1))
        shapes[name] = (w, nodes[-1].out_bytes)
        cur = name
        same = [t for t, (ww, bb) in shapes.items() if (ww, bb) == (w, 4) and t != cur]
        if shapes[cur][1] == 4 and same and rng.random() < 0.7:
            name = f"t{k}"
            k += 1
            nodes.append(Node(name, "add", (same[0], cur), {
                "multiplier": rng.integers(2**30, 2**31 - 1, w),
                "shift": rng.integers(-4, 1, w)}))
            shapes[name] = (w, 4)
            cur = name
    g = Graph({"x": (rows, width, 4)}, tuple(nodes), (cur,))
    return g, {"x": x}


@pytest.mark.parametrize("config", ["tiny", "small"])
def test_random_graphs(config, base_seed):
    """Differential: 12 random graphs per config, machine model vs golden evaluation."""
    cfg = get_config(config)
    for case in range(12):
        rng = np.random.default_rng([base_seed, case, cfg.vector_length])
        g, inputs = random_graph(rng, cfg)
        desc = " -> ".join(f"{n.kind}:{n.out}" for n in g.nodes)
        print(f"seed={base_seed} case={case} {config}: {desc}")
        try:
            cg = compile_graph(g, cfg)
        except CompileError as exc:  # a resource limit is fine, named; nothing else
            assert exc.resource in ("sram", "imem"), exc
            print(f"  not compiled: {exc}")
            continue
        out, cycles = cg.run_on_model(inputs)
        want = evaluate(g, inputs)
        assert cycles == cg.cycles, desc
        for o in g.outputs:
            assert np.array_equal(out[o], want[o]), (desc, o)


def _q4_weight(rng, n_out: int, n_in: int):
    """Q4_1-style blocks of 32 (int4 values, fp16 scales and minimums): exact RowWeight."""
    from golden.planes import RowWeight
    nb = n_in // 32
    d = rng.uniform(0.002, 0.03, (n_out, nb)).astype(np.float16).astype(np.float64)
    m = (-8 * d + rng.normal(0, 0.005, (n_out, nb))).astype(np.float16).astype(np.float64)
    return RowWeight.from_blocks(rng.integers(0, 16, (n_out, n_in)) - 8, d, m + 8 * d)


def llm_mlp_graph(rng, rows: int = 2, d: int = 96, f: int = 128):
    """The MLP half of a llama layer in the LLM's integer numerics as a graph of row-scaled
    ops, with random Q4_1-style weights and int32 residual rows (one massive activation):
    ``(graph, inputs)``; ``graph.params`` holds the weights for an independent check."""
    wg, wu, wd = _q4_weight(rng, f, d), _q4_weight(rng, f, d), _q4_weight(rng, d, f)
    gamma = rng.uniform(0.2, 3.0, d)
    h = rng.integers(-(2**28), 2**28, (rows, d))
    h[0, 5] = 2**30 - 7  # a massive activation
    eh = rng.integers(-30, -20, (rows, 1))
    g = Graph(
        inputs={"h": (rows, d, 4), "h.e": (rows, d, 2)},
        nodes=(
            Node("x", "rmsnorm", ("h",), {"gamma": gamma, "eps": 1e-5}),
            Node("gate", "qlinear", ("x",), {"weight": wg}),
            Node("g16", "narrow", ("gate",), {"bits": 16}),
            Node("up", "qlinear", ("x",), {"weight": wu}),
            Node("u16", "narrow", ("up",), {"bits": 16}),
            Node("m", "swiglu", ("g16", "u16")),
            Node("down", "qlinear", ("m",), {"weight": wd}),
            Node("y", "add_aligned", ("h", "down")),
        ),
        outputs=("y", "y.e"))
    return g, {"h": h, "h.e": np.repeat(eh, d, axis=1)}


def test_llm_mlp_half_as_a_graph(base_seed):
    """`llm_mlp_graph` compiled and run on the machine model: equal, bit for bit, to the
    same steps of `golden.llm.LlamaModel.forward_int` written out here with the golden
    functions (not the graph's own evaluation)."""
    from golden.activation import swiglu_int
    from golden.norm import NormWeights, rmsnorm_int
    from golden.planes import add_aligned, linear_int, narrow

    print(f"seed={base_seed}")
    g, inputs = llm_mlp_graph(np.random.default_rng([base_seed, 21]))
    nodes = {n.out: n for n in g.nodes}
    wg, wu, wd = (nodes[k].attrs["weight"] for k in ("gate", "up", "down"))
    gamma, h = nodes["x"].attrs["gamma"], inputs["h"]
    d = h.shape[1]
    eh = inputs["h.e"][:, :1]
    cg = compile_graph(g, "medium")  # VL 64: a partial tile of d = 96
    out, cycles = cg.run_on_model(inputs)
    assert cycles == cg.cycles
    # golden.llm's MLP half, step by step
    x, ex = rmsnorm_int(h, eh, NormWeights(gamma, 1e-5), 16)
    gg, eg = narrow(*linear_int(x, ex, wg, 16), 16)
    uu, eu = narrow(*linear_int(x, ex, wu, 16), 16)
    mm, em = swiglu_int(gg, eg, uu, eu, 16)
    y, ey = add_aligned(h, eh, *linear_int(mm, em, wd, 16), bits=32)
    assert np.array_equal(out["y"], y), np.argwhere(out["y"] != y)[:4]
    assert np.array_equal(out["y.e"], np.repeat(ey, d, axis=1))
    print(f"{cycles} cycles")


def test_argmax_node(base_seed):
    """The next token's id on the chip: an ``argmax`` node over int32 logit rows."""
    print(f"seed={base_seed}")
    rng = np.random.default_rng([base_seed, 22])
    x = rng.integers(-(2**31), 2**31, (3, 100))
    x[1, [7, 90]] = 2**31 - 1  # a tie: the lower index
    g = Graph({"logits": (3, 100, 4)}, (Node("next", "argmax", ("logits",)),), ("next",))
    cg = compile_graph(g, "small")
    out, cycles = cg.run_on_model({"logits": x})
    assert cycles == cg.cycles
    assert list(out["next"][:, 0]) == list(np.argmax(x, axis=1)) and out["next"][1, 0] == 7


def test_llm_attention_inputs_as_a_graph(base_seed):
    """The first half of a llama layer up to the attention core, as a graph in the LLM's
    numerics: RMSNorm -> q, k, v block-scaled products -> per-head narrows to 15 bits ->
    RoPE of q and k at their positions (GQA: 4 query heads, 2 KV heads).  Bit-exact on the
    machine model with `golden.llm.LlamaModel.forward_int`'s steps written out here."""
    from golden.norm import NormWeights, rmsnorm_int
    from golden.planes import linear_int, narrow
    from golden.rope import rope_int

    print(f"seed={base_seed}")
    rng = np.random.default_rng([base_seed, 23])
    rows, d, hq, hkv, dh = 2, 64, 4, 2, 16
    wq, wk, wv = _q4_weight(rng, hq * dh, d), _q4_weight(rng, hkv * dh, d), \
        _q4_weight(rng, hkv * dh, d)
    gamma = rng.uniform(0.2, 3.0, d)
    pos = np.array([3, 41])
    h = rng.integers(-(2**27), 2**27, (rows, d))
    eh = rng.integers(-30, -20, (rows, 1))
    g = Graph(
        inputs={"h": (rows, d, 4), "h.e": (rows, d, 2)},
        nodes=(
            Node("x", "rmsnorm", ("h",), {"gamma": gamma, "eps": 1e-5}),
            Node("q32", "qlinear", ("x",), {"weight": wq}),
            Node("q15", "narrow", ("q32",), {"bits": 15, "heads": hq}),
            Node("q", "rope", ("q15",), {"heads": hq, "positions": pos, "bits": 15}),
            Node("k32", "qlinear", ("x",), {"weight": wk}),
            Node("k15", "narrow", ("k32",), {"bits": 15, "heads": hkv}),
            Node("k", "rope", ("k15",), {"heads": hkv, "positions": pos, "bits": 15}),
            Node("v32", "qlinear", ("x",), {"weight": wv}),
            Node("v", "narrow", ("v32",), {"bits": 15, "heads": hkv}),
        ),
        outputs=("q", "q.e", "k", "k.e", "v", "v.e"))
    cg = compile_graph(g, "medium")
    out, cycles = cg.run_on_model({"h": h, "h.e": np.repeat(eh, d, axis=1)})
    assert cycles == cg.cycles
    # golden.llm's steps (forward_int): heads() narrows per row and head, then RoPE
    x, ex = rmsnorm_int(h, eh, NormWeights(gamma, 1e-5), 16)

    def heads(wide, e, n):
        return narrow(wide.reshape(rows, n, dh), e[:, :, None], 15)

    want = {"q": rope_int(*heads(*linear_int(x, ex, wq, 16), hq), pos, 10000.0, 15),
            "k": rope_int(*heads(*linear_int(x, ex, wk, 16), hkv), pos, 10000.0, 15),
            "v": heads(*linear_int(x, ex, wv, 16), hkv)}
    for name, (val, e) in want.items():
        n = val.shape[1]
        assert np.array_equal(out[name], val.reshape(rows, n * dh)), name
        assert np.array_equal(out[f"{name}.e"], np.repeat(e[..., 0], dh, axis=1)), name
    print(f"{cycles} cycles")


# ---- the quantised block as a graph (compiler.block): the one compile path -------------------
@pytest.mark.parametrize(("shape", "causal"), [((8, 32, 2, 64), True), ((16, 48, 3, 80), False)])
def test_block_graph_is_the_block(shape, causal, base_seed):
    """The block's graph evaluated by the op kinds' golden functions gives every tensor of
    `QuantBlock.trace` (the block's own reference), for every plan's placement."""
    from compiler.block import PLANS, block_graph
    from golden.block import make_block
    print(f"seed={base_seed} shape={shape} causal={causal}")
    blk = make_block(base_seed, *shape, causal=causal)
    x = blk.quantize_input(blk.example_input(base_seed))
    tr = blk.trace(x)
    for plan in PLANS[:2]:
        vals = evaluate(block_graph(blk, plan), {"x": x})
        for name in ("x8", "q", "k", "v", "ctx", "h_sum", "h", "gelu", "y"):
            assert np.array_equal(vals[name], tr[name]), name


def test_decode_graph_steps_are_prefill_rows(base_seed):
    """`kv_attention`'s golden function, run step by step with its state (the cache),
    gives row p of the causal block at step p; a stale cache past p does not show."""
    from compiler.block import decode_graph
    from golden.block import make_block
    print(f"seed={base_seed}")
    blk = make_block(base_seed, 8, 32, 2, 64, causal=True)
    x = blk.quantize_input(blk.example_input(base_seed))
    want = blk.forward_int(x)
    g = decode_graph(blk, 8)
    state = {"pos": 0}
    for p in range(8):
        state["pos"] = p
        assert np.array_equal(evaluate(g, {"x": x[p:p + 1]}, state)["y"][0], want[p]), p
    state["pos"] = 2  # a second sequence over the full (stale) cache
    y = evaluate(g, {"x": x[5:6]}, state)["y"][0]
    fresh = {"pos": 0}
    for p, row in enumerate((x[0], x[1], x[5])):
        fresh["pos"] = p
        ref = evaluate(g, {"x": row[None]}, fresh)["y"][0]
    assert np.array_equal(y, ref)
    with pytest.raises(CompileError,
                       match=r"node 'ctx' \(kv_attention\) depends on the run's position"):
        evaluate(g, {"x": x[:1]})


def test_block_graph_lowering_refusals():
    """The attention node needs per-head q (and v): said at the node, not deep inside."""
    from compiler.block import block_graph
    from golden.block import make_block
    blk = make_block(0, 8, 32, 2, 64)
    g = block_graph(blk)
    nodes = tuple(Node(n.out, n.kind, n.inputs, {k: v for k, v in n.attrs.items()
                                                  if k != "heads"} if n.out == "q" else n.attrs,
                       n.out_bytes) for n in g.nodes)
    with pytest.raises(CompileError, match=r"node 'ctx' \(attention\): q .* per-head linear"):
        compile_graph(Graph(g.inputs, nodes, g.outputs, g.place), "tiny")
    bad = tuple(Node(n.out, n.kind, n.inputs, dict(n.attrs, mxm="MXM_X9"), n.out_bytes)
                if n.out == "k" else n for n in g.nodes)
    with pytest.raises(CompileError, match=r"node 'k' \(linear\): mxm='MXM_X9' is not an MXM"):
        compile_graph(Graph(g.inputs, bad, g.outputs, g.place), "tiny")


def test_block_graph_compiles_like_any_graph(base_seed):
    """`compile_graph` on the block's graph (no variant search): bit-exact with the block,
    the requantisation after the residual fused into it (fewer VXM instructions than
    unfused: the int32 sum is not read back)."""
    from compiler.block import block_graph
    from compiler.graph import _fusions
    from golden.block import make_block
    print(f"seed={base_seed}")
    blk = make_block(base_seed, 16, 32, 2, 64)
    x = blk.quantize_input(blk.example_input(base_seed))
    g = block_graph(blk)
    assert [g.nodes[k].out for k in sorted(_fusions(g))] == ["h"]
    cg = compile_graph(g, "small")
    out, cycles = cg.run_on_model({"x": x})
    assert cycles == cg.cycles
    assert np.array_equal(out["y"], blk.forward_int(x))


@pytest.mark.parametrize(("config", "nbytes"), [("tiny", 1), ("tiny", 4), ("small", 2)])
def test_relu_the_docs_example(config, nbytes, base_seed):
    """The op kind docs/compiler.md adds as its example: bit-exact with its golden function
    at every width, negative values zeroed, the rest kept."""
    print(f"seed={base_seed} {config} {nbytes} bytes")
    rng = np.random.default_rng([base_seed, nbytes])
    lim = 2 ** (8 * nbytes - 1)
    x = rng.integers(-lim, lim, (3, 40))
    x[0, :3] = (-lim, lim - 1, 0)
    g = Graph({"x": (3, 40, nbytes)}, (Node("y", "relu", ("x",), out_bytes=nbytes),), ("y",))
    cg = compile_graph(g, config)
    out, cycles = cg.run_on_model({"x": x})
    assert cycles == cg.cycles
    assert np.array_equal(out["y"], evaluate(g, {"x": x})["y"])
    assert np.array_equal(out["y"], np.maximum(x, 0))


@pytest.mark.parametrize(("config", "d", "beta"), [
    ("tiny3", 24, True),  # a partial last tile (the mask keeps its padding 0)
    ("small", 64, False),
    ("medium", 96, True),
])
def test_layernorm_node(config, d, beta, base_seed):
    """``layernorm`` (mean subtracted exactly, then as RMSNorm, plus beta) on the machine
    model equals `golden.norm.layernorm_int`, for rows with an outlier, a constant row
    (everything subtracted away: only eps and beta remain), negative and positive means
    and tiny and large exponents."""
    from golden.norm import NormWeights, layernorm_int
    print(f"seed={base_seed} {config} d={d} beta={beta}")
    rng = np.random.default_rng([base_seed, d, 7])
    rows = 5
    h = rng.integers(-(2**26), 2**26, (rows, d))
    h[1, 2] = 2**30  # outlier
    h[2] = 123_456  # constant row
    h[3] += 2**27  # large positive mean
    h[4] = rng.integers(-40, 40, d)  # small values
    eh = np.array([[-20], [-31], [-8], [-16], [3]])
    gamma = rng.uniform(0.2, 3.0, d) * rng.choice([-1, 1], d)
    b = rng.normal(0, 0.5, d) if beta else None
    g = Graph({"h": (rows, d, 4), "h.e": (rows, d, 2)},
              (Node("y", "layernorm", ("h",), {"gamma": gamma, "eps": 1e-5, "beta": b}),),
              ("y", "y.e"))
    cg = compile_graph(g, config)
    out, cycles = cg.run_on_model({"h": h, "h.e": np.repeat(eh, d, axis=1)})
    assert cycles == cg.cycles
    y, ey = layernorm_int(h, eh, NormWeights(gamma, 1e-5, b))
    assert np.array_equal(out["y"], y), np.argwhere(out["y"] != y)[:4]
    assert np.array_equal(out["y.e"], np.repeat(ey, d, axis=1))
    print(f"{cycles} cycles")


def test_block_and_decode_graphs_spread_the_right_products():
    """Which products share their output tiles over every MXM: none by default; the three
    after the attention with ``spread_mlp`` (their weight tiles then beside the MXM that
    takes each); every product of a decode step (``spread=True``), none without."""
    from compiler.block import PLANS, block_graph, decode_graph
    from compiler.graph import group_of
    from golden.block import make_block
    blk = make_block(0, 16, 64, 2, 128)
    cfg = get_config("small")

    def spread(g):
        return sorted(n.out for n in g.nodes
                      if n.kind == "linear" and n.attrs.get("spread") == "all")

    assert spread(block_graph(blk)) == []
    assert spread(block_graph(blk, spread_mlp=True)) == ["gelu", "h_sum", "y"]
    assert spread(decode_graph(blk, 16)) == ["gelu", "h_sum", "k", "q", "v", "y"]
    assert spread(decode_graph(blk, 16, spread=False)) == []
    g = block_graph(blk, PLANS[0], spread_mlp=True)
    y = next(n for n in g.nodes if n.out == "y")
    assert group_of(cfg, y) == [PLANS[0]["w2"]] + [m for m in ("MXM_W0", "MXM_E0")
                                                   if m != PLANS[0]["w2"]]
