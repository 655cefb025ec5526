"""A model as data: a graph of ops over row tensors, compiled op by op onto one program.

A `Graph` names its inputs (row tensors: ``rows x width``, 1, 2 or 4 bytes per element)
and a list of `Node` s in program order; every node is one op kind of `OPS`, which pairs
the kind's golden function (plain numpy, what the machine must compute, bit for bit) with
its lowering (`compiler.lowerings`).  `evaluate` runs the graph on the golden functions;
`compile_graph` lowers every node onto one `ProgramBuilder` (tensors allocated in SRAM,
inputs and constants written by the host), schedules it and returns a `CompiledGraph`
that runs on the machine model (or the RTL, through the same host image).

Adding an op kind: its golden function, its lowering, one `OpKind` entry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from arch.config import TspConfig, get_config
from arch.isa import int_value
from arch.program import Program
from golden.quant import INT32_MAX, INT32_MIN, MULTIPLIER_MAX, SHIFT_MAX, SHIFT_MIN, requantize

from . import tiling as T
from .alloc import FirstOf
from .builder import ProgramBuilder
from .collector import checkpoint, paused
from .errors import CompileError
from .lowerings import add_rows, lookup_rows, matmul_rows, relu_rows, requantize_rows
from .routes import planes_out

RANGE = {1: (-128, 127), 2: (-(2**15), 2**15 - 1), 4: (-(2**31), 2**31 - 1)}


@dataclass(frozen=True)
class Node:
    """One op: ``out = kind(*inputs, **attrs)``; ``out_bytes`` its element width."""

    out: str
    kind: str
    inputs: tuple[str, ...]
    attrs: Mapping[str, np.ndarray] = field(default_factory=dict)
    out_bytes: int = 4


@dataclass(frozen=True)
class Graph:
    """Inputs ``name -> (rows, width, bytes)``, nodes in program order, output names."""

    inputs: Mapping[str, tuple[int, int, int]]
    nodes: tuple[Node, ...]
    outputs: tuple[str, ...]
    #: placement: the hemisphere ("W" or "E") a tensor's SRAM vectors go to (e.g. the side
    #: of the MXM that reads it); tensors not named go where there is most room
    place: Mapping[str, str] = field(default_factory=dict)

    def shapes(self) -> dict[str, tuple[int, int, int]]:
        """Every tensor's (rows, width, bytes), checking each node's inputs and attrs."""
        for name, spec in self.inputs.items():
            ok = (isinstance(spec, tuple | list) and len(spec) == 3
                  and all(isinstance(v, int | np.integer) for v in spec)
                  and spec[0] >= 1 and spec[1] >= 1 and spec[2] in (1, 2, 4))
            if not ok:
                raise CompileError(f"graph input {name!r}: expected (rows >= 1, width >= 1, "
                                   f"bytes 1, 2 or 4), got {spec!r}", "graph", True)
        shp = dict(self.inputs)
        for n in self.nodes:
            if n.kind not in OPS:
                raise CompileError(f"node {n.out!r}: unknown op kind {n.kind!r} "
                                   f"(known: {', '.join(sorted(OPS))})", "graph", True)
            missing = [i for i in n.inputs if i not in shp]
            if missing:
                raise CompileError(f"node {n.out!r}: inputs {missing} are not defined before "
                                   "it (graph inputs or earlier nodes)", "graph", True)
            if n.out in shp:
                raise CompileError(f"node {n.out!r}: tensor defined twice", "graph", True)
            if OPS[n.kind].scaled:
                bad = [f"{i}.e" for i in n.inputs if f"{i}.e" not in shp]
                if bad:
                    raise CompileError(f"node {n.out!r} ({n.kind}) takes row-scaled inputs: "
                                       f"their exponent tensors {bad} are not defined",
                                       "graph", True)
            try:
                shp[n.out] = OPS[n.kind].shape(n, [shp[i] for i in n.inputs])
            except CompileError:
                raise
            except (KeyError, ValueError, TypeError, IndexError) as e:  # a missing attr, ...
                raise CompileError(f"node {n.out!r} ({n.kind}): its inputs {list(n.inputs)} or "
                                   f"attrs {sorted(n.attrs)} do not fit the op "
                                   f"({type(e).__name__}: {e})", "graph", True) from None
            if shp[n.out][2] not in (1, 2, 4):
                raise CompileError(f"node {n.out!r} ({n.kind}): out_bytes must be 1, 2 or 4, "
                                   f"got {shp[n.out][2]}", "graph", True)
            if OPS[n.kind].scaled:
                shp[f"{n.out}.e"] = (shp[n.out][0], shp[n.out][1], 2)
        for o in self.outputs:
            if o not in shp:
                raise CompileError(f"output {o!r} is not a tensor of the graph", "graph", True)
        return shp


@dataclass(frozen=True)
class OpKind:
    shape: Callable  # (node, input shapes) -> output shape, raising CompileError if bad
    golden: Callable  # (node, *input arrays) -> output array (int64)
    lower: Callable  # (builder, node, input tensors, output tensor, shapes) -> None
    #                  (a lookup's table tensor comes after its inputs)
    #: row-scaled (`golden.planes`): every input ``x`` comes with its exponent tensor
    #: ``x.e`` and the output ``y`` with ``y.e`` (int16 lane vectors: each lane holds its
    #: row's or head's exponent); golden gets and returns (values, exponents) pairs, the
    #: lowering gets (tensor, exponent tensor) pairs
    scaled: bool = False
    #: allocates the op's Gather tables before anything else (256 consecutive addresses)
    setup: Callable | None = None
    #: per node, before the inputs: (builder, node) -> state the lowering gets as
    #: ``pb.state[node.out]`` (its tables; ``exclude``: slices its output must avoid)
    prepare: Callable | None = None
    #: per node, after the inputs and before anything the program writes: (builder, node)
    #: -> state added to ``pb.state[node.out]`` (a product's ``weights``, host constants;
    #: the slices an op keeps to itself)
    reserve: Callable | None = None
    #: the output tensor's vector keys, (node, shape, VL) -> keys; default ``(row, tile)``
    keys: Callable | None = None
    #: keeps state across runs (a KV cache): golden gets the run's state dict too
    stateful: bool = False


def _need(node: Node, ok: bool, what: str) -> None:
    if not ok:
        raise CompileError(f"node {node.out!r} ({node.kind}): {what}", "graph", True)


#: the ranges of the per-channel constants the VXM loads into its registers (as
#: `golden.quant.requantize` checks them: the compiled program must refuse what it refuses)
CONST_RANGE = {"multiplier": (0, MULTIPLIER_MAX), "shift": (SHIFT_MIN, SHIFT_MAX),
               "bias": (INT32_MIN, INT32_MAX)}


def _consts(n, width: int, names=("multiplier", "shift")) -> None:
    """Attrs ``names`` of ``n``: integer vectors of ``(width,)`` within `CONST_RANGE`."""
    for a in names:
        v = np.asarray(n.attrs[a])
        _need(n, v.shape == (width,), f"{a} must have shape ({width},), got {v.shape}")
        _need(n, v.dtype.kind in "iu", f"{a} must be integers, got {v.dtype}")
        lo, hi = CONST_RANGE[a]
        _need(n, not v.size or (int(v.min()) >= lo and int(v.max()) <= hi),
              f"{a} out of range [{lo}, {hi}] (got {int(v.min())}..{int(v.max())})")


# ----------------------------------------------------------------------------- op kinds
def _product_shape(n, ins) -> tuple[int, int]:
    """(rows, outputs) of a product of its int8 input and its int8 (N, K) weight."""
    (rows, k, b), = ins
    w = np.asarray(n.attrs["weight"])
    _need(n, b == 1, f"input must be int8 (1 byte), got {b} bytes")
    _need(n, w.ndim == 2 and w.shape[1] == k and w.dtype == np.int8,
          f"weight must be int8 (N, {k}), got {w.dtype} {w.shape}")
    return rows, w.shape[0]


def _matmul_shape(n, ins):
    rows, n_out = _product_shape(n, ins)
    _need(n, n.out_bytes == 4, f"the output is the int32 sums: out_bytes must be 4, got "
          f"{n.out_bytes} (a linear node requantises)")
    return rows, n_out, n.out_bytes


def _matmul_golden(n, x):
    return x.astype(np.int64) @ np.asarray(n.attrs["weight"], np.int64).T


def group_of(cfg: TspConfig, node: Node) -> list[str]:
    """The MXMs a product's output tiles go to in turn: every MXM of the config, or with
    ``mxm`` the planned one first and the others of its hemisphere (``spread="all"``:
    every other)."""
    every = [s.name for s in cfg.slices_of("MXM")]
    m = node.attrs.get("mxm")
    if m is None:
        return every
    _need(node, m in every, f"mxm={m!r} is not an MXM of config {cfg.name!r} "
          f"({', '.join(every)})")
    if node.attrs.get("spread", "hemisphere") == "all":
        return [m] + [x for x in every if x != m]
    return [m] + [x for x in every if x != m and cfg.slice(x).hemisphere ==
                  cfg.slice(m).hemisphere]


def _product_weights(pb, n):
    """The weight tiles as host constants, each beside the MXM that takes it (output tile
    ``t`` on the ``t % len``-th of `group_of`), so that MXMs of both sides load from
    their own side's read ports; none on the slice of the node's own table where its
    Gathers would hold that slice's port while the tiles load (`_linear_prepare`;
    measured on the medium d128 block, 1,767 -> 1,733 cycles; keeping them off every
    table's slice was 15 % slower)."""
    w = np.asarray(n.attrs["weight"])
    sides = [pb.cfg.slice(m).hemisphere for m in group_of(pb.cfg, n)]
    return {"weights": pb.weights(f"{n.out}.w", w, lambda t, _k: sides[t % len(sides)],
                                  exclude=pb.state.get(n.out, {}).get("weights_exclude", ()))}


def _matmul_lower(pb, n, ins, out, shp):
    (x,), (rows, k, _) = ins, shp[n.inputs[0]]
    w = np.asarray(n.attrs["weight"])

    def store(b, mv, i, t):  # the int32 sums straight to SRAM
        planes_out(pb.O, b, mv, "out", out[(i, t)])

    matmul_rows(pb, n.out, group_of(pb.cfg, n), pb.state[n.out]["weights"], w.shape[0], k,
                rows, x.loc, epilogue=store)
    pb.release(pb.state[n.out]["weights"])


def _linear_shape(n, ins):
    rows, n_out = _product_shape(n, ins[:1])
    _consts(n, n_out, ("bias", "multiplier", "shift"))
    _need(n, len(ins) <= 2, f"takes the input and at most a residual, got {len(ins)} inputs")
    if len(ins) == 2:
        _need(n, ins[1] == (rows, n_out, 4) and n.out_bytes == 4,
              f"the residual (second input) and the output must be int32 ({rows}, {n_out}), "
              f"got {ins[1]} and {n.out_bytes} bytes")
    if "table" in n.attrs:
        _need(n, np.shape(n.attrs["table"]) == (256,) and n.out_bytes == 1 and len(ins) == 1,
              "a fused table lookup takes a 256-entry table, an int8 output, no residual")
    h = n.attrs.get("heads")
    if h is not None:
        _need(n, int(h) >= 1 and n_out % int(h) == 0 and "table" not in n.attrs and
              len(ins) == 1, f"heads={h} must divide the {n_out} outputs (no table, no "
              "residual)")
    return rows, n_out, n.out_bytes


def _linear_golden(n, x, residual=None):
    acc = _matmul_golden(n, x) + np.asarray(n.attrs["bias"], np.int64)
    if np.abs(acc).max(initial=0) > 2**31 - 1:
        raise OverflowError(f"node {n.out!r}: int32 accumulator + bias out of range")
    if residual is not None:
        y = requantize(acc, n.attrs["multiplier"], n.attrs["shift"], qmin=RANGE[4][0],
                       qmax=RANGE[4][1]).astype(np.int64) + residual
        if np.abs(y).max(initial=0) > 2**31 - 1:
            raise OverflowError(f"node {n.out!r}: residual sum out of the int32 range")
        return y
    lo, hi = RANGE[1 if "table" in n.attrs else n.out_bytes]
    y = requantize(acc, n.attrs["multiplier"], n.attrs["shift"], qmin=lo,
                   qmax=hi).astype(np.int64)
    if "table" in n.attrs:
        return _lookup_golden(n, y)
    return y


def _linear_prepare(pb, n, shp):
    """A fused table: 256 consecutive addresses of a slice holding no other table, on
    ``table_side`` (default the side with most room); the output avoids that slice, and
    so do the weights where the table's Gathers (one per row and output tile) are at
    least as many as a tile's loads (``vl / mxm_load_rows``): they would hold the port
    the loads need (not in a decode step's one row, whose loads then keep their width)."""
    if "table" not in n.attrs:
        return {}
    sl = pb.mem.slices(n.attrs.get("table_side"), 1, exclude=pb.table_slices, const=True)
    t = pb.const(f"{n.out}.table", dict(enumerate(T.table_vectors(n.attrs["table"],
                                                                   pb.vl))), 1, slices=sl)
    pb.table_slices += sl
    busy = shp[n.inputs[0]][0] * pb.cfg.mxm_load_rows >= pb.vl
    return {"table": t, "exclude": sl, "weights_exclude": sl if busy else []}


def _row_keys(rows: int, width: int, vl: int) -> list[tuple[int, int]]:
    """A row tensor's vector keys: ``(row, lane tile)``."""
    return [(i, t) for i in range(rows) for t in range(T.ntiles(width, vl))]


def _heads_keys(n, shape, vl):
    rows, width, _ = shape
    h = n.attrs.get("heads")
    if h is None:
        return _row_keys(rows, width, vl)
    dh = width // int(h)
    return [(hh, i, t) for hh in range(int(h)) for t in T.head_tiles(hh, dh, vl)
            for i in range(rows)]


def _linear_lower(pb, n, ins, out, shp):
    """`lowerings.dense_rows`: the product with its bias add and requantisation fused into
    the bundle that takes the sum off the MXM (and the node's table, residual or heads)."""
    from .lowerings.dense import dense_rows

    (rows, k, _), st = shp[n.inputs[0]], pb.state[n.out]
    n_out = shp[n.out][1]
    pre = None
    if "table" in n.attrs and pb.keep and n.attrs.get("keep_pre"):
        tsl = st["exclude"][0]  # the pre-activation on the table's side, not on its
        # slice, dealt over the others (a write per output vector beside the result's own)
        pre = pb.mem.tensor(n.attrs["keep_pre"], list(out.locs), 1, pb.mem.side_of(tsl),
                            exclude=[tsl], spread=True)
    h = n.attrs.get("heads")
    dense_rows(pb, n.out, ins[0].loc, rows, k, st["weights"], group_of(pb.cfg, n), out,
               n.attrs["bias"], n.attrs["multiplier"], n.attrs["shift"],
               heads=None if h is None else (int(h), n_out // int(h)),
               table=st["table"].loc(0) if "table" in st else None, pre=pre,
               residual=ins[1] if len(ins) > 1 else None, narrow=st.get("narrow"),
               weights_key=f"{n.out}.w")
    pb.release(st["weights"])
    if pre is not None:
        pb.keep_as(n.attrs["keep_pre"], "rows", pre, n_out, pre)


def _requant_shape(n, ins):
    (rows, width, _), = ins
    _consts(n, width)
    return rows, width, n.out_bytes


def _requant_golden(n, x):
    lo, hi = RANGE[n.out_bytes]
    return requantize(x, n.attrs["multiplier"], n.attrs["shift"], qmin=lo,
                      qmax=hi).astype(np.int64)


def _requant_lower(pb, n, ins, out, shp):
    rows, width, _ = shp[n.inputs[0]]
    requantize_rows(pb, n.out, ins[0], out, rows, width, n.attrs["multiplier"],
                    n.attrs["shift"])


def _add_shape(n, ins):
    (ra, wa, ba), (rb, wb, bb) = ins
    _need(n, (ra, wa) == (rb, wb), f"operand shapes differ: {(ra, wa)} and {(rb, wb)}")
    _need(n, ba == bb == 4, f"operands must be int32 (4 bytes), got {ba} and {bb} bytes")
    if "multiplier" in n.attrs or "shift" in n.attrs:
        _consts(n, wa)
    return ra, wa, n.out_bytes


def _add_golden(n, a, b):
    if "multiplier" in n.attrs:
        b = requantize(b, n.attrs["multiplier"], n.attrs["shift"], qmin=RANGE[4][0],
                       qmax=RANGE[4][1])
    return np.clip(a.astype(np.int64) + b, *RANGE[n.out_bytes])


def _add_lower(pb, n, ins, out, shp):
    rows, width, _ = shp[n.inputs[0]]
    add_rows(pb, n.out, ins[0], ins[1], out, rows, width, n.attrs.get("multiplier"),
             n.attrs.get("shift"))


def _relu_shape(n, ins):
    (rows, width, b), = ins
    _need(n, n.out_bytes == b, f"the output has the input's type ({b} bytes), got "
          f"{n.out_bytes}")
    return rows, width, b


def _relu_golden(n, x):
    return np.maximum(x, 0)


def _relu_lower(pb, n, ins, out, shp):
    rows, width, _ = shp[n.inputs[0]]
    relu_rows(pb, n.out, ins[0], out, rows, width)


def _lookup_shape(n, ins):
    (rows, width, b), = ins
    t = np.asarray(n.attrs["table"])
    _need(n, b == 1 and n.out_bytes == 1, "a table lookup maps int8 to int8")
    _need(n, t.shape == (256,), f"table must have 256 entries, got {t.shape}")
    return rows, width, 1


def _lookup_golden(n, x):
    return np.asarray(n.attrs["table"]).astype(np.int8)[x.astype(np.int8).view(np.uint8)] \
        .astype(np.int64)


def _lookup_lower(pb, n, ins, out, shp):
    src, tab = ins  # the table tensor: allocated first, by `compile_graph`
    if len(tab.ranges) != 1:  # a Gather indexes 256 consecutive addresses of one slice
        raise CompileError(f"node {n.out!r}: no 256 consecutive free addresses for its table "
                           f"(got {tab.ranges})", "sram", True)
    lookup_rows(pb, n.out, src, tab.loc(0), out, list(out.locs))


# ---- row-scaled ops: the LLM's integer path (golden.planes, norm, rope, activation) ------
def _row_e(e) -> np.ndarray:
    """A per-row exponent from its lane form (every lane of a row holds it)."""
    return np.asarray(e, np.int64)[:, :1]


def _lanes(e, width: int) -> np.ndarray:
    """Exponents ``(rows, 1)`` or per head ``(rows, H, 1)`` in lane form ``(rows, width)``."""
    e = np.asarray(e, np.int64)
    if e.ndim == 3:
        return np.repeat(e[..., 0], width // e.shape[1], axis=1)
    return np.repeat(e, width, axis=1)


def _heads_e(e, heads: int) -> np.ndarray:
    e = np.asarray(e, np.int64)
    return e[:, ::e.shape[1] // heads][..., None]


def _scaled_shape(bytes_in: int | None, bytes_out: int):
    def shape(n, ins):
        (rows, width, b), *rest = ins
        _need(n, bytes_in is None or b == bytes_in,
              f"input must be {8 * (bytes_in or 0)}-bit ({bytes_in} bytes), got {b}")
        for r in rest:
            _need(n, r[:2] == (rows, width), f"operand shapes differ: {(rows, width)} and "
                  f"{r[:2]}")
        return rows, width, bytes_out
    return shape


def _bits(n, default=16) -> int:
    return int(n.attrs.get("bits", default))


def _rmsnorm_nw(n):
    from golden.norm import NormWeights
    if "norm" in n.attrs:  # a golden.norm.NormWeights (a GGUF layer's)
        return n.attrs["norm"]
    return NormWeights(np.asarray(n.attrs["gamma"]), float(n.attrs.get("eps", 1e-5)),
                       n.attrs.get("beta"))


def _rmsnorm_shape(n, ins):
    (rows, width, b), = ins
    _need(n, b == 4, f"input must be the int32 residual stream, got {b} bytes")
    _need(n, _rmsnorm_nw(n).n == width, f"gamma must have shape ({width},)")
    return rows, width, 2


def _rmsnorm_golden(n, he):
    from golden.norm import rmsnorm_int
    q, e = rmsnorm_int(he[0], _row_e(he[1]), _rmsnorm_nw(n), 16)
    return q, _lanes(e, q.shape[1])


def _rmsnorm_lower(pb, n, ins, out, shp):
    from .lowerings import rmsnorm_rows
    (h, eh), = ins
    rmsnorm_rows(pb, n.out, h, eh, out[0], out[1], shp[n.inputs[0]][0], _rmsnorm_nw(n))


def _layernorm_golden(n, he):
    from golden.norm import layernorm_int
    q, e = layernorm_int(he[0], _row_e(he[1]), _rmsnorm_nw(n))
    return q, _lanes(e, q.shape[1])


def _layernorm_lower(pb, n, ins, out, shp):
    from .lowerings.norm import layernorm_rows
    (h, eh), = ins
    layernorm_rows(pb, n.out, h, eh, out[0], out[1], shp[n.inputs[0]][0], _rmsnorm_nw(n))


def _qlinear_shape(n, ins):
    (rows, width, b), = ins
    w = n.attrs["weight"]
    _need(n, b == 2, f"input must be int16 (2 bytes), got {b}")
    _need(n, w.shape[1] == width, f"weight input width {w.shape[1]} != {width}")
    return rows, w.shape[0], 4


def _chips(n) -> int:
    """Tensor parallel (attr ``chips``): the chips of the C2C ring that the op's row is split
    over (1: not split)."""
    c = n.attrs.get("chips", 1)
    _need(n, isinstance(c, int) and c >= 1, f"chips must be an int >= 1, got {c!r}")
    return c


def _qlinear_golden(n, xe):
    """With ``chips > 1`` the product is one chip's part (a column shard of the weight,
    `RowWeight.shard`) and its int32 sums are all-reduced: on one chip alone (the ring a
    loopback) ``chips x`` them."""
    from golden.planes import linear_int
    acc, e = linear_int(xe[0], _row_e(xe[1]), n.attrs["weight"], 16)
    acc = _chips(n) * acc
    if np.abs(acc).max(initial=0) > 2**31 - 1:
        raise OverflowError(f"node {n.out!r}: the sum leaves the int32 range")
    return acc, _lanes(e, acc.shape[1])


def _qlinear_lower(pb, n, ins, out, shp):
    """`linear_rows`; products that read one input with one block size share its masked
    planes (`block_planes`, made once for all of them, with block sums if any has offsets;
    a llama.cpp Q4_K_M file's ``attn_v`` has blocks of 16 beside ``attn_q``'s 32)."""
    from .lowerings import linear_rows
    from .lowerings.linear import block_planes
    (x, ex), = ins
    rows, width, _ = shp[n.inputs[0]]
    group = n.attrs["weight"].group
    peers = [m.attrs["weight"] for m in pb.graph.nodes
             if m.kind == "qlinear" and m.inputs == n.inputs
             and m.attrs["weight"].group == group] if pb.graph else []
    planes, chips = None, _chips(n)
    if len(peers) > 1:
        key = ("planes", n.inputs[0], group)
        if key not in pb.shared:
            name = f"{n.inputs[0]}.planes" + ("" if group == 32 else str(group))
            pb.shared[key] = block_planes(pb, name, x, rows, width, group,
                                          any(w.o is not None for w in peers),
                                          pb.cfg.slices_of("MXM")[0].hemisphere)
        planes = pb.shared[key]
    if chips == 1:
        linear_rows(pb, n.out, x, ex, n.attrs["weight"], out[0], out[1], rows, planes=planes)
        return
    from .lowerings.allreduce import allreduce_rows
    part = pb.mem.tensor(f"{n.out}.part", list(out[0].locs), 4)
    linear_rows(pb, n.out, x, ex, n.attrs["weight"], part, out[1], rows, planes=planes)
    allreduce_rows(pb, f"{n.out} sum", part, out[0], list(out[0].locs), chips,
                   n.attrs.get("rank", 0))
    pb.release(part)


def _check_bits(n) -> int:
    """The node's ``bits`` (default 16): an int whose values fit 1, 2 or 4 bytes."""
    b = n.attrs.get("bits", 16)
    _need(n, int_value(b) is not None and (2 <= b <= 16 or 25 <= b <= 32),
          f"bits must be an int in 2..16 or 25..32 (values of 1, 2 or 4 bytes), got {b!r}")
    return int(b)


def _narrow_shape(n, ins):
    _check_bits(n)
    rows, width, _ = _scaled_shape(4, -(-_bits(n) // 8))(n, ins)
    h = int(n.attrs.get("heads", 1))
    _need(n, h >= 1 and width % h == 0, f"{h} heads do not divide the width {width}")
    return rows, width, -(-_bits(n) // 8)


def _narrow_golden(n, xe):
    """(``chips``: a row split over chips takes the largest of their shifts; alone, its
    own.)"""
    from golden.planes import narrow
    x, e = xe
    h = int(n.attrs.get("heads", 1))
    if h == 1:
        q, eo = narrow(x, _row_e(e), _bits(n))
        return q, _lanes(eo, x.shape[1])
    rows, width = x.shape
    q, eo = narrow(x.reshape(rows, h, width // h), _heads_e(e, h), _bits(n))
    return q.reshape(rows, width), _lanes(eo, width)


def _narrow_lower(pb, n, ins, out, shp):
    from .lowerings import narrow_groups, narrow_rows
    (x, e), = ins
    rows, width, _ = shp[n.inputs[0]]
    h = int(n.attrs.get("heads", 1))
    if h == 1:
        narrow_rows(pb, n.out, x, e, out[0], out[1], rows, width, _bits(n), _chips(n))
    else:
        _need(n, _chips(n) == 1, "per-head narrows are not split over chips")
        narrow_groups(pb, n.out, x, e, out[0], out[1], rows, h, width // h, bits=_bits(n))


def _rope_shape(n, ins):
    rows, width, b = _scaled_shape(2, 2)(n, ins)
    _check_bits(n)
    h = n.attrs["heads"]
    _need(n, int_value(h) is not None and h >= 1 and width % h == 0
          and (width // h) % 2 == 0, f"heads={h!r} of an even width must divide {width}")
    pos = np.asarray(n.attrs["positions"])
    _need(n, pos.shape == (rows,) and pos.dtype.kind in "iu" and (pos >= 0).all(),
          f"positions must be {rows} ints >= 0 (one per row), got {pos.dtype} {pos.shape}")
    return rows, width, b


def _rope_golden(n, xe):
    from golden.rope import rope_int
    x, e = xe
    rows, width = x.shape
    h = int(n.attrs["heads"])
    q, eo = rope_int(x.reshape(rows, h, width // h), _heads_e(e, h), n.attrs["positions"],
                     float(n.attrs.get("base", 10000.0)), _bits(n))
    return q.reshape(rows, width), _lanes(eo, width)


def _rope_lower(pb, n, ins, out, shp):
    from golden.rope import rope_tables

    from .lowerings import rope_rows
    (x, e), = ins
    rows, width, _ = shp[n.inputs[0]]
    h = int(n.attrs["heads"])
    cos, sin = rope_tables(n.attrs["positions"], width // h, float(n.attrs.get("base", 1e4)))
    rope_rows(pb, n.out, x, e, out[0], out[1], rows, h, width // h, cos, sin, _bits(n))


def _rope_at_shape(n, ins):
    rows, width, b = _scaled_shape(2, 2)(n, ins)
    h = int(n.attrs["heads"])
    _need(n, rows == 1, f"RoPE at the run-time position takes one row, got {rows}")
    _need(n, h >= 1 and width % h == 0 and (width // h) % 2 == 0,
          f"{h} heads of an even width must divide {width}")
    return rows, width, b


def _rope_at_golden(n, xe, state):
    from golden.rope import rope_int
    x, e = xe
    rows, width = x.shape
    h = int(n.attrs["heads"])
    q, eo = rope_int(x.reshape(rows, h, width // h), _heads_e(e, h),
                     np.full(rows, int(state["pos"])), float(n.attrs.get("base", 1e4)),
                     _bits(n))
    return q.reshape(rows, width), _lanes(eo, width)


def _rope_at_prepare(pb, n, shp):
    """The C/S Gather tables of every position ``< max_context`` (shared by the nodes
    with the same heads and base) and the position vectors."""
    from golden.rope import rope_tables

    from .lowerings.rope import position_tables
    rows, width, _ = shp[n.inputs[0]]
    h, C = int(n.attrs["heads"]), int(n.attrs["max_context"])
    base = float(n.attrs.get("base", 1e4))
    pb.position_vectors()
    key = ("rope", h, width // h, C, base)
    if key not in pb.shared:
        cos, sin = rope_tables(np.arange(C), width // h, base)
        pb.shared[key] = position_tables(pb, f"rope.h{h}", cos, sin, h)
    return {"tables": pb.shared[key]}


def _rope_at_lower(pb, n, ins, out, shp):
    from .lowerings import rope_rows
    (x, e), = ins
    rows, width, _ = shp[n.inputs[0]]
    h = int(n.attrs["heads"])
    rope_rows(pb, n.out, x, e, out[0], out[1], rows, h, width // h, None, None, _bits(n),
              pb.position_vectors(), pb.state[n.out]["tables"])


def _gqa_shape(n, ins):
    _need(n, len(ins) == 3, f"takes q, k and v, got {len(ins)} inputs")
    (rows, wq, bq), (rk, wk, bk), (rv, wv, bv) = ins
    hq, hkv, C = (int(n.attrs[a]) for a in ("n_heads", "n_kv_heads", "max_context"))
    _need(n, rows == rk == rv == 1, "one query row per decode step")
    _need(n, bq == bk == bv == 2, "q, k and v are int16 (15-bit) rows")
    _need(n, hq >= 1 and hkv >= 1 and hq % hkv == 0 and wq % hq == 0 and
          wk == wv == wq // hq * hkv, f"{hq} query and {hkv} KV heads do not fit widths "
          f"{wq}, {wk}, {wv}")
    _need(n, C >= 1, f"max_context must be >= 1, got {C}")
    return 1, wq, 2


def _gqa_golden(n, qe, ke, ve, state):
    """Append k, v (and exponents) at ``state["pos"]`` to this node's cache in ``state``,
    then `golden.attention.attention_int` of q over keys 0..pos."""
    from golden.attention import attention_int
    hq, hkv, C = (int(n.attrs[a]) for a in ("n_heads", "n_kv_heads", "max_context"))
    p = int(state["pos"])
    _need(n, 0 <= p < C, f"position {p} outside the cache of {C}")
    d = qe[0].shape[1] // hq
    cache = state.setdefault(n.out, {"k": np.zeros((C, hkv, d), np.int64),
                                     "v": np.zeros((C, hkv, d), np.int64),
                                     "ek": np.zeros((C, hkv, 1), np.int64),
                                     "ev": np.zeros((C, hkv, 1), np.int64)})
    cache["k"][p], cache["ek"][p] = ke[0].reshape(hkv, d), _heads_e(ke[1], hkv)[0]
    cache["v"][p], cache["ev"][p] = ve[0].reshape(hkv, d), _heads_e(ve[1], hkv)[0]
    c, ec = attention_int(qe[0].reshape(1, hq, d), _heads_e(qe[1], hq), cache["k"][:p + 1],
                          cache["ek"][:p + 1], cache["v"][:p + 1], cache["ev"][:p + 1],
                          np.array([p]), _bits(n))
    return c, _lanes(ec, c.shape[1])


def _gqa_lower(pb, n, ins, out, shp):
    """This node's KV cache (host-zeroed, rewritten by the program), the append of k and
    v at the position, then `attention_decode_row` over the cache."""
    from .lowerings import attention_decode_row
    from .lowerings.attention import append_kv, kv_cache_int
    (q, eq), (k, ek), (v, ev) = ins
    hq, hkv, C = (int(n.attrs[a]) for a in ("n_heads", "n_kv_heads", "max_context"))
    d = shp[n.inputs[0]][1] // hq
    cache, locs = kv_cache_int(pb, n.out.removesuffix("ctx"), C, hkv, d)
    append_kv(pb, f"{n.out} append k", k, ek, "k", locs, C, hkv, d)
    append_kv(pb, f"{n.out} append v", v, ev, "v", locs, C, hkv, d)
    attention_decode_row(pb, n.out, q, eq, cache, next(iter(pb.position_vectors().values())),
                         out[0], out[1], hq, hkv, d, C, chips=_chips(n))


def _swiglu_golden(n, ge, ue):
    from golden.activation import swiglu_int
    q, e = swiglu_int(ge[0], _row_e(ge[1]), ue[0], _row_e(ue[1]), _bits(n))
    return q, _lanes(e, q.shape[1])


def _swiglu_lower(pb, n, ins, out, shp):
    from .lowerings import swiglu_rows
    (g, eg), (u, eu) = ins
    rows, width, _ = shp[n.inputs[0]]
    swiglu_rows(pb, n.out, g, eg, u, eu, out[0], out[1], rows, width, _chips(n))


def _add_aligned_golden(n, ae, be):
    from golden.planes import add_aligned
    q, e = add_aligned(ae[0], _row_e(ae[1]), be[0], _row_e(be[1]), bits=32)
    return q, _lanes(e, q.shape[1])


def _add_aligned_lower(pb, n, ins, out, shp):
    from .lowerings import add_aligned_rows
    (a, ea), (b, eb) = ins
    rows, width, _ = shp[n.inputs[0]]
    add_aligned_rows(pb, n.out, a, ea, b, eb, out[0], out[1], rows, width)


def _argmax_shape(n, ins):
    (rows, width, b), = ins
    _need(n, b == 4, f"input must be int32 (4 bytes), got {b}")
    return rows, 1, 4


def _argmax_golden(n, x):
    """(Split over ``chips``: this chip's ``valid`` entries from index ``offset``; alone,
    the ring's agreement is its own.)"""
    from golden.vocab import argmax_int
    valid = n.attrs.get("valid", x.shape[1])
    return (argmax_int(x[:, :valid]) + n.attrs.get("offset", 0))[:, None].astype(np.int64)


def _argmax_lower(pb, n, ins, out, shp):
    from .lowerings import argmax_rows
    rows, width, _ = shp[n.inputs[0]]
    # the output is one int32 per row: its (row, 0) vector holds it in every lane
    argmax_rows(pb, n.out, ins[0], FirstOf(out), rows, width, _chips(n),
                n.attrs.get("offset", 0), n.attrs.get("valid"), n.attrs.get("valid_min"))


# ---- the quantised block's attention (int8 q, k, v rows -> int8 context rows) -------------
ATTN_ROLES = ("mxm_scores", "mxm_sums", "mxm_trans", "mxm_ctx")


def _attention_spec(pb, n, shp):
    from .lowerings.block_attention import SoftmaxAttention
    rows, width, _ = shp[n.inputs[0]]
    a = n.attrs
    every = [s.name for s in pb.cfg.slices_of("MXM")]
    for r in ATTN_ROLES:
        _need(n, a.get(r, every[0]) in every, f"{r}={a.get(r)!r} is not an MXM of config "
              f"{pb.cfg.name!r} ({', '.join(every)})")
    return SoftmaxAttention(
        rows, width, int(a["n_heads"]), bool(a["causal"]), int(a["score_multiplier"]),
        int(a["score_shift"]), int(a["ctx_multiplier"]), int(a["ctx_shift"]),
        np.asarray(a["exp_table"]), np.asarray(a["recip_table"]),
        *(a.get(r, every[0]) for r in ATTN_ROLES), a.get("group"), int(a.get("max_chains", 2)))


def _attention_shape(n, ins):
    _need(n, len(ins) == 3, f"takes q, k and v, got {len(ins)} inputs")
    (rows, width, b), *_ = ins
    _need(n, all(i == (rows, width, 1) for i in ins),
          f"q, k and v must be int8 of one shape, got {ins}")
    h = int(n.attrs["n_heads"])
    _need(n, h >= 1 and width % h == 0, f"n_heads={h} must divide the width {width}")
    return rows, width, 1


def _attention_golden(n, q, k, v):
    from golden.block import attention_context, attention_scores, causal_mask, softmax_int
    a = n.attrs
    _, sc = attention_scores(q, k, int(a["n_heads"]), int(a["score_multiplier"]),
                             int(a["score_shift"]))
    sm = softmax_int(sc, causal_mask(q.shape[0]) if a["causal"] else None,
                     np.asarray(a["exp_table"]), np.asarray(a["recip_table"]))
    _, ctx = attention_context(sm.probs, v, int(a["ctx_multiplier"]), int(a["ctx_shift"]))
    return ctx.astype(np.int64)


def _attention_prepare(pb, n, shp):
    from .lowerings.block_attention import check_seq_len, prefill_tables, score_slices
    spec = _attention_spec(pb, n, shp)
    check_seq_len(pb.cfg, spec.seq_len)
    tabs = prefill_tables(pb, spec)
    if not n.attrs.get("scores_after_inputs"):
        tabs["score_slices"] = score_slices(pb)
    return {"spec": spec, "tables": tabs}


def _attention_reserve(pb, n):
    """The score slices chosen after the inputs are placed (attr ``scores_after_inputs``;
    else with the tables, before: which schedules better depends on the shape)."""
    from .lowerings.block_attention import score_slices
    if n.attrs.get("scores_after_inputs"):
        pb.state[n.out]["tables"]["score_slices"] = score_slices(pb)
    return {}


def _need_heads(n, k: int, t) -> None:
    """Input ``k`` (tensor ``t``) of an attention node must be per head (keyed ``(h, i,
    t)``: a ``linear`` with ``heads``)."""
    _need(n, len(next(iter(t.locs))) == 3, f"{'qkv'[k]} ({n.inputs[k]}) must come from a "
          "per-head linear (attrs heads=n_heads)")


def _attention_lower(pb, n, ins, out, shp):
    from .lowerings.block_attention import PrefillAttention
    q, k, v = ins  # v per head, or rows (then V^T is made by unit-vector MVMs)
    _need_heads(n, 0, q)
    st = pb.state[n.out]
    PrefillAttention(pb, st["spec"], st["tables"], q, k, v, out, pb.release_dying).run()


# ---- the block's attention for one decode step, over a KV cache in SRAM ------------------
def _kv_attention_shape(n, ins):
    rows, width, _ = _attention_shape(n, ins)
    _need(n, rows == 1, f"a decode step attends with one query row, got {rows}")
    C = n.attrs.get("max_context")
    _need(n, isinstance(C, int) and C >= 1, f"max_context must be a positive int, got {C!r}")
    return rows, width, 1


def _kv_attention_golden(n, q, k, v, state):
    """Append k, v at ``state["pos"]`` to the cache in ``state`` (zeros at first), attend
    with q over keys 0..pos (`golden.block`'s integer steps)."""
    from golden.block import attention_scores, softmax_int
    a, p, C = n.attrs, int(state["pos"]), int(n.attrs["max_context"])
    H, D = int(a["n_heads"]), q.shape[1]
    _need(n, 0 <= p < C, f"position {p} outside the cache of {C}")
    K = state.setdefault(f"{n.out}.k", np.zeros((C, D), np.int64))
    V = state.setdefault(f"{n.out}.v", np.zeros((C, D), np.int64))
    K[p], V[p] = k[0], v[0]
    dh = D // H
    _, sc = attention_scores(np.repeat(q, p + 1, 0), K[:p + 1], H, int(a["score_multiplier"]),
                             int(a["score_shift"]))
    sm = softmax_int(sc[:, :1, :], None, np.asarray(a["exp_table"]),
                     np.asarray(a["recip_table"]))
    vh = V[:p + 1].reshape(p + 1, H, dh).transpose(1, 0, 2)
    acc = (sm.probs.astype(np.int64) @ vh).transpose(1, 0, 2).reshape(1, D)
    return requantize(acc, int(a["ctx_multiplier"]), int(a["ctx_shift"])).astype(np.int64)


def _kv_attention_prepare(pb, n, shp):
    from .lowerings.block_attention import prefill_tables
    spec = _attention_spec(pb, n, shp)
    tabs = prefill_tables(pb, spec, exp_minus_128=False)
    return {"spec": spec, "tables": tabs}


def _kv_attention_reserve(pb, n):
    """The position vectors and the caches (after the inputs: they are host-zeroed once and
    rewritten by the program); the step's k and v must go elsewhere."""
    from .lowerings.block_attention import kv_cache
    cache = kv_cache(pb, pb.state[n.out]["spec"], int(n.attrs["max_context"]))
    for i in n.inputs[1:]:
        pb.avoid.setdefault(i, []).extend(cache.slices)
    return {"cache": cache}


def _kv_attention_lower(pb, n, ins, out, shp):
    from .lowerings.block_attention import CachedAttention
    q, k, v = ins
    _need_heads(n, 0, q)
    _need_heads(n, 2, v)
    st = pb.state[n.out]
    CachedAttention(pb, st["spec"], st["tables"], st["cache"], q, k, v, out).run()


def _allreduce_shape(n, ins):
    (rows, width, b), = ins
    c = n.attrs.get("chips")
    _need(n, isinstance(c, int) and c >= 1, f"chips must be an int >= 1, got {c!r}")
    _need(n, b == 4 and n.out_bytes == 4, f"sums int32 tensors (4 bytes), got {b} -> "
          f"{n.out_bytes}")
    return rows, width, 4


def _allreduce_golden(n, x):
    """On one chip (a ring of one: its links loop back) every hop brings its own tensor:
    ``chips x``.  On a system each chip gets the sum of all chips' tensors
    (`compiler.parallel` checks that against the unsplit model)."""
    y = n.attrs["chips"] * x
    if np.abs(y).max(initial=0) > 2**31 - 1:
        raise OverflowError(f"node {n.out!r}: the sum leaves the int32 range")
    return y


def _allreduce_lower(pb, n, ins, out, shp):
    from .lowerings.allreduce import allreduce_rows

    allreduce_rows(pb, n.out, ins[0], out, list(out.locs), n.attrs["chips"],
                   n.attrs.get("rank", 0))


def _send_shape(n, ins):
    _need(n, isinstance(n.attrs.get("link"), int), "needs link= (the C2C_E link)")
    return 1, 1, 1  # nothing on this chip: the row leaves it


def _send_golden(n, x, state):
    state.setdefault("c2c", {})[n.attrs["key"]] = x  # what the next chip receives
    return np.zeros((1, 1), np.int64)


def _send_lower(pb, n, ins, out, shp):
    from .lowerings.link import send_rows

    send_rows(pb, n.out, ins[0], n.attrs["link"])


def _recv_shape(n, ins):
    shape = n.attrs.get("shape")
    _need(n, not ins and isinstance(shape, tuple) and len(shape) == 3, "takes no input and "
          "needs shape=(rows, width, bytes)")
    return shape


def _recv_golden(n, state):
    got = state.get("c2c", {}).get(n.attrs["key"])
    if got is None:
        raise CompileError(f"node {n.out!r} (recv): nothing was sent as "
                           f"{n.attrs['key']!r} (state['c2c'])", "graph", True)
    return got


def _recv_lower(pb, n, ins, out, shp):
    from .lowerings.link import recv_rows

    recv_rows(pb, n.out, out, n.attrs["link"], n.attrs["arrivals"])


def _setup_rsqrt(pb):
    from .lowerings import rsqrt_seed_table
    rsqrt_seed_table(pb)


def _setup_activation(pb):
    from .lowerings import activation_tables
    activation_tables(pb)


OPS: dict[str, OpKind] = {
    "matmul": OpKind(_matmul_shape, _matmul_golden, _matmul_lower,
                     reserve=_product_weights),
    # the quantised dense layer; attrs heads (per-head outputs), table (a fused lookup),
    # a second input (a residual added in int32), mxm/spread (which MXMs)
    "linear": OpKind(_linear_shape, _linear_golden, _linear_lower, prepare=_linear_prepare,
                     reserve=_product_weights, keys=_heads_keys),
    # the quantised block's softmax attention over the rows (prefill; causal or not)
    "attention": OpKind(_attention_shape, _attention_golden, _attention_lower,
                        prepare=_attention_prepare, reserve=_attention_reserve),
    # one decode step of it: k, v appended to a KV cache in SRAM at the run-time position,
    # one query row over the cache (keys past the position masked); keeps state across runs
    "kv_attention": OpKind(_kv_attention_shape, _kv_attention_golden, _kv_attention_lower,
                           prepare=_kv_attention_prepare, reserve=_kv_attention_reserve,
                           stateful=True),
    "requant": OpKind(_requant_shape, _requant_golden, _requant_lower),
    "add": OpKind(_add_shape, _add_golden, _add_lower),
    "lookup": OpKind(_lookup_shape, _lookup_golden, _lookup_lower),
    "relu": OpKind(_relu_shape, _relu_golden, _relu_lower),
    # the LLM's row-scaled integer ops (int16 activations, exponents per row or head)
    "rmsnorm": OpKind(_rmsnorm_shape, _rmsnorm_golden, _rmsnorm_lower, True, _setup_rsqrt),
    # LayerNorm (mean subtracted, then as RMSNorm, plus beta): attrs norm (a NormWeights
    # with beta) or gamma, beta, eps
    "layernorm": OpKind(_rmsnorm_shape, _layernorm_golden, _layernorm_lower, True,
                        _setup_rsqrt),
    "qlinear": OpKind(_qlinear_shape, _qlinear_golden, _qlinear_lower, True),
    "narrow": OpKind(_narrow_shape, _narrow_golden, _narrow_lower, True),
    "rope": OpKind(_rope_shape, _rope_golden, _rope_lower, True),
    "swiglu": OpKind(_scaled_shape(2, 2), _swiglu_golden, _swiglu_lower, True,
                     _setup_activation),
    # a decode step's: RoPE at the position the host writes per step; grouped-query
    # attention of one row over a KV cache in SRAM that the program appends to
    "rope_at": OpKind(_rope_at_shape, _rope_at_golden, _rope_at_lower, True,
                      prepare=_rope_at_prepare, stateful=True),
    "gqa_attention": OpKind(_gqa_shape, _gqa_golden, _gqa_lower, True, _setup_activation,
                            stateful=True),
    "add_aligned": OpKind(_scaled_shape(4, 4), _add_aligned_golden, _add_aligned_lower, True),
    "argmax": OpKind(_argmax_shape, _argmax_golden, _argmax_lower),  # the next token's id
    # tensor parallelism: the int32 partial sums of every chip of the C2C ring, summed
    "allreduce": OpKind(_allreduce_shape, _allreduce_golden, _allreduce_lower),
    # pipeline parallelism: a row tensor to the next chip (C2C_E link), from the previous
    # one (C2C_W link, at the cycles it arrives: attrs arrivals); golden: through
    # state["c2c"][key]
    "send": OpKind(_send_shape, _send_golden, _send_lower, stateful=True),
    "recv": OpKind(_recv_shape, _recv_golden, _recv_lower, stateful=True),
}


# ----------------------------------------------------------------------------- running
def evaluate(graph: Graph, inputs: Mapping[str, np.ndarray], state: dict | None = None
             ) -> dict[str, np.ndarray]:
    """Every tensor of the graph by the golden functions (int64 arrays).  ``state``: what
    stateful ops keep across runs (a KV cache; ``state["pos"]`` the run's position),
    updated in place."""
    graph.shapes()
    vals = {k: np.asarray(v, np.int64) for k, v in inputs.items()}
    for n in graph.nodes:
        op = OPS[n.kind]
        if op.stateful and (state is None or "pos" not in state):
            raise CompileError(f"node {n.out!r} ({n.kind}) depends on the run's position or "
                               "keeps state across runs: evaluate needs state={'pos': "
                               "position, ...}", "graph", True)
        args = [(vals[i], vals[f"{i}.e"]) if op.scaled else vals[i] for i in n.inputs]
        got = op.golden(n, *args, *((state,) if op.stateful else ()))
        if op.scaled:
            vals[n.out], vals[f"{n.out}.e"] = got
        else:
            vals[n.out] = got
    return vals


@dataclass
class CompiledGraph:
    cfg: TspConfig
    graph: Graph
    program: Program
    cycles: int
    init: dict  # (slice, addr) -> uint8[VL]: constants and weights
    tensors: dict  # name -> Tensor

    def sram_image(self, inputs: Mapping[str, np.ndarray]) -> dict[tuple[str, int], np.ndarray]:
        """What the host writes before start: constants, weights and the inputs."""
        img = dict(self.init)
        vl = self.cfg.vector_length
        missing = [n for n in self.graph.inputs if n not in inputs]
        if missing:
            raise ValueError(f"inputs: missing {missing} (the graph's inputs are "
                             f"{list(self.graph.inputs)})")
        for name, (rows, width, nb) in self.graph.inputs.items():
            x = np.asarray(inputs[name])
            if not np.issubdtype(x.dtype, np.integer):  # not silently truncated
                raise ValueError(f"input {name!r}: expected integers, got {x.dtype}")
            x = x.astype(np.int64)
            if x.shape != (rows, width):
                raise ValueError(f"input {name!r}: expected shape {(rows, width)}, "
                                 f"got {x.shape}")
            lo, hi = RANGE[nb]
            if x.size and (x.min() < lo or x.max() > hi):
                raise ValueError(f"input {name!r}: values outside the {8 * nb}-bit range")
            for (i, t), locs in self.tensors[name].locs.items():
                planes = T.bytes_of(T.tile_vec(x[i], t, vl), nb)
                for loc, v in zip(locs, planes, strict=True):
                    img[loc] = v
        return img

    def read(self, name: str, read_vec) -> np.ndarray:
        rows, width, _ = self.graph.shapes()[name]
        vl = self.cfg.vector_length
        out = np.zeros((rows, T.ntiles(width, vl) * vl), np.int64)
        for key, locs in self.tensors[name].locs.items():
            i, t = key[-2:]  # (row, tile), or (head, row, tile): the heads' lanes add up
            out[i, t * vl:(t + 1) * vl] += T.from_bytes(np.stack([read_vec(*l) for l in locs]))
        return out[:, :width]

    def run_on_model(self, inputs) -> tuple[dict[str, np.ndarray], int]:
        """Outputs read back after a run on the machine model, and its cycle count."""
        from golden.machine import Machine

        m = Machine(self.cfg)
        for (s, a), v in self.sram_image(inputs).items():
            m.write_mem(s, a, v)
        m.load_program(self.program)
        res = m.run(max_cycles=4 * self.cycles + 1000)
        return {o: self.read(o, m.read_mem) for o in self.graph.outputs}, res.cycles


def lower_graph(graph: Graph, cfg: TspConfig | str, *, keep: bool = True,
                rigid_loads: bool = True, prealloc=(), pb: ProgramBuilder | None = None,
                what: str = "the graph", spmd: bool = False, reruns: bool = False
                ) -> tuple[ProgramBuilder, dict]:
    """Lower every node in program order onto one builder: ``(builder, tensors)``.

    Allocation order: the zero registers; the Gather tables (a table is 256 consecutive
    addresses: taken while SRAM is empty) of the lookups, of the op kinds (`OpKind.setup`)
    and of every node (`OpKind.prepare`); the inputs; every node's reservations
    (`OpKind.reserve`: a product's weights, a KV cache; stateful ops last) and
    ``prealloc`` (register constants of an earlier attempt): host constants all, before
    anything the program writes.  Then each
    node's output tensor and its lowering; with ``keep=False`` a tensor's SRAM is given
    back after its last reader (``pb.dying``: the inputs this node reads last, which a
    lowering may give back early with ``pb.release_dying``).  Every node's output is kept
    for read-back (``pb.kept``) while its SRAM is not reused.  ``pb``: a builder to lower
    onto (what it holds after a `CompileError` says how far the lowering got); ``what``
    names the program in resource errors; ``spmd``: one program of an SPMD set
    (`ProgramBuilder.spmd`); ``reruns``: the program runs once per step with the host's
    constants loaded once (`ProgramBuilder.reruns`: none of them released)."""
    checkpoint()  # (the dropped lowerings of a variant search freed)
    cfg = get_config(cfg)
    shp = graph.shapes()
    pb = pb or ProgramBuilder(cfg, keep=keep, rigid_loads=rigid_loads)
    pb.spmd = spmd
    pb.reruns = reruns
    pb.mem.what = what
    pb.graph = graph
    vl = pb.vl
    tensors = {}
    pb.zero_registers()  # (REQUANT's zero point; 0 - x) before anything else
    # lookup nodes' tables; no tensor shares their slices (a Gather's index and result
    # stream through)
    mems = [s.name for s in cfg.slices_of("MEM")]
    tabs = [n for n in graph.nodes if n.kind == "lookup"]
    if len(tabs) >= len(mems) - 1:
        raise CompileError(f"{len(tabs)} table lookups need {len(tabs)} MEM slices of their "
                           f"own but config {cfg.name!r} has {len(mems)} in all", "sram", True)
    for k, n in enumerate(tabs):
        tensors[f"{n.out}.table"] = pb.const(
            f"{n.out}.table", dict(enumerate(T.table_vectors(n.attrs["table"], vl))), 1,
            slices=[mems[-1 - k]])
    for kind in sorted({n.kind for n in graph.nodes}):
        if OPS[kind].setup is not None:
            OPS[kind].setup(pb)
    for n in graph.nodes:
        if OPS[n.kind].prepare is not None:
            pb.state[n.out] = OPS[n.kind].prepare(pb, n, shp)
    avoid = sorted({sl for t in tensors.values() for sl, _, _ in t.ranges})
    for name, (rows, width, nb) in graph.inputs.items():
        tensors[name] = pb.mem.tensor(name, _row_keys(rows, width, vl), nb,
                                      graph.place.get(name), exclude=avoid, const=True)
    for n in sorted(graph.nodes, key=lambda n: OPS[n.kind].stateful):  # the state last
        if OPS[n.kind].reserve is not None:
            pb.state.setdefault(n.out, {}).update(OPS[n.kind].reserve(pb, n))
    for name, v in prealloc:
        pb.const_vec(name, v)
    pb.mem.check(final=True)  # the host constants alone do not fit: no variant helps
    last = {}
    for k, n in enumerate(graph.nodes):
        for i in n.inputs:
            last[i] = k
    fused = _fusions(graph)

    def alloc(n):
        rows, width, nb = shp[n.out]
        keys = (OPS[n.kind].keys(n, shp[n.out], vl) if OPS[n.kind].keys else
                _row_keys(rows, width, vl))
        excl = avoid + list(pb.state.get(n.out, {}).get("exclude", ())) + \
            pb.avoid.get(n.out, [])
        # int8 results dealt over the slices of their side: a product streaming them as
        # its input reads every slice in turn, not one slice for every MVM; kept out of
        # the banks its inputs are read from where there is room (a READ and a WRITE of
        # one bank cannot share a cycle: a residual's chain reads one row's sum while it
        # writes another's).  Where the inputs hold both banks of a slice, out of the
        # last input's (a residual: read in the very bundle that writes).
        srcs = [tensors[i] for i in n.inputs if i in tensors]
        avoid_banks = pb.mem.banks_of(*srcs)
        if srcs:
            last = pb.mem.banks_of(srcs[-1])
            avoid_banks = {s: b if len(b) < 2 else last.get(s, set())
                           for s, b in avoid_banks.items()}
        tensors[n.out] = pb.mem.tensor(n.out, keys, nb, graph.place.get(n.out), exclude=excl,
                                       spread=True, avoid_banks=avoid_banks)
        return keys

    for k, n in enumerate(graph.nodes):
        rows, width, nb = shp[n.out]
        keys = alloc(n) if n.out not in tensors else list(tensors[n.out].locs)
        if k + 1 in fused:  # the next node's requantisation rides on this one's epilogue
            nxt = graph.nodes[k + 1]
            alloc(nxt)
            pb.state.setdefault(n.out, {})["narrow"] = (
                tensors[nxt.out], nxt.attrs["multiplier"], nxt.attrs["shift"])
        if OPS[n.kind].scaled:
            tensors[f"{n.out}.e"] = pb.mem.tensor(f"{n.out}.e", keys, 2, exclude=avoid)
            ins = [(tensors[i], tensors[f"{i}.e"]) for i in n.inputs]
            out = (tensors[n.out], tensors[f"{n.out}.e"])
        else:
            ins = [tensors[i] for i in n.inputs]
            out = tensors[n.out]
        if n.kind == "lookup":
            ins.append(tensors[f"{n.out}.table"])
        dying = [i for i in dict.fromkeys(n.inputs) if last[i] == k and i not in graph.outputs]
        pb.dying = {tensors[i].name for i in dying}
        if OPS[n.kind].scaled:
            pb.dying |= {tensors[f"{i}.e"].name for i in dying}
        if k not in fused:
            with pb.vxm_group():  # each node on the VXM group free soonest
                OPS[n.kind].lower(pb, n, ins, out, shp)
        for i in dying:
            pb.release_dying(tensors[i], *([tensors[f"{i}.e"]] if OPS[n.kind].scaled else []))
        pb.dying = set()
        t = tensors[n.out]
        kind = "heads" if len(keys[0]) == 3 else ("rows4" if nb == 4 else "rows")
        pb.keep_as(n.out, kind, t, width, t)
    pb.mem.check()
    return pb, tensors


def _fusions(graph: Graph) -> set[int]:
    """Nodes lowered inside the node before them: a ``requant`` whose one input is the
    output of a ``linear`` with a residual right before it (the residual sum is in a VXM
    register there: one REQUANT from it instead of reading the int32 sum back)."""
    out = set()
    for k in range(1, len(graph.nodes)):
        a, b = graph.nodes[k - 1], graph.nodes[k]
        if (b.kind == "requant" and b.inputs == (a.out,) and a.kind == "linear"
                and len(a.inputs) == 2):
            out.add(k)
    return out


@paused
def compile_graph(graph: Graph, cfg: TspConfig | str, order: str = "program"
                  ) -> CompiledGraph:
    """Lower every node in program order onto one builder (`lower_graph`), schedule,
    emit."""
    from .schedule import check_order

    check_order(order)  # before the lowering, not after it
    cfg = get_config(cfg)
    pb, tensors = lower_graph(graph, cfg)
    prog, em = pb.finish("the graph", order)
    return CompiledGraph(cfg, graph, prog, em.cycles, dict(pb.init), tensors)
