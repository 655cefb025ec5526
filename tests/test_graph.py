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
