"""Pipeline parallelism: a llama's decode step split over linked chips (machine model).

References: the int8 golden generate (`golden.llm.LlamaModel.generate_ids`, an
independent path) for the tokens; each chip's compiled prediction for its cycles."""

from __future__ import annotations

import numpy as np
import pytest

from arch.config import get_config
from compiler.graph import Graph, Node, evaluate
from compiler.pipeline import compile_pipeline, split_layers


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    from sim.model import load_model

    return load_model("tiny", tmp_path_factory.mktemp("tiny"))[1]


def test_two_stage_pipeline_generates_the_golden_tokens(tiny_lm, base_seed):
    cfg = get_config("layer").with_links().replace(c2c_links=2)
    rng = np.random.default_rng([base_seed, 77])
    prompt = [int(t) for t in rng.integers(3, tiny_lm.config.vocab, 3)]
    print("prompt", prompt)
    pm = compile_pipeline(tiny_lm, cfg, 16, 2)
    assert pm.split == [(0, 1), (1, 2)]
    toks, cycles = pm.generate(prompt, 4)
    assert toks == tiny_lm.generate_ids(prompt, 4)
    assert all(c == [s.cycles for s in pm.stages] for c in cycles)
    # chip 1 waits for chip 0's row: it ends after chip 0, by at least a link's latency
    assert pm.stages[1].cycles > pm.stages[0].cycles + cfg.c2c_latency


def test_pipeline_needs_two_links():
    with pytest.raises(ValueError, match="needs 2 C2C links per end"):
        compile_pipeline(None, get_config("tiny").with_links(), 16, 2)


def test_split_balances_bytes_with_the_head_last():
    class Q:
        def __init__(self, n):
            self.q = np.zeros(n, np.int8)

    layer = {k: Q(100) for k in ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down")}
    W = {"layers": [layer] * 10, "output": Q(2100)}  # the head = 3 layers' bytes
    assert split_layers(W, 1) == [(0, 10)]
    # 13 layers' worth over 2 chips: the best is 7 on one side (7 | 3 + head, or 6 | 4 +
    # head is 7 too): the largest chip holds 4,900 bytes
    two = split_layers(W, 2)
    loads = [700 * (b - a) + (2100 if k == 1 else 0) for k, (a, b) in enumerate(two)]
    assert max(loads) == 4900 and two[0][0] == 0 and two[-1][1] == 10
    assert two[0][1] == two[1][0]
    # 4 chips: 13 layers' worth, at best 4 on the largest (3, 3, 3 | 1 + head)
    four = split_layers(W, 4)
    assert max(700 * (b - a) + (2100 if k == 3 else 0) for k, (a, b) in enumerate(four)) \
        == 2800
    with pytest.raises(ValueError, match="11 chips for 10 layers"):
        split_layers(W, 11)


def test_send_and_recv_golden_pass_the_row_through_state():
    g0 = Graph({"x": (1, 16, 4)}, (Node("s", "send", ("x",), {"link": 0, "key": "x"}),),
               ("s",))
    g1 = Graph({}, (Node("x", "recv", (), {"shape": (1, 16, 4), "link": 0, "key": "x",
                                           "arrivals": []}, 4),), ("x",))
    state = {"pos": 0}
    x = np.arange(16)[None]
    evaluate(g0, {"x": x}, state)
    assert np.array_equal(evaluate(g1, {}, state)["x"], x)
