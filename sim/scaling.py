"""Scaling over chips (``make scaling``): a tensor-parallel MLP on 1, 2 and 4 linked chips.

For each shape, on the machine model of a system (`golden.system`): the unsplit MLP on
one chip, and the MLP split over 2 and 4 chips (`compiler.parallel`: hidden features
split, partial sums all-reduced over the C2C ring), each compiled in its fastest
placement and order; every chip's output checked bit-exact against the MLP in numpy,
every chip's cycles equal to the compiler's prediction.  Reported per row: cycles,
speed-up over one chip, the ideal (cycles of one chip / chips), and link utilisation
(beats sent / (cycles x 2 ends x links), averaged over chips).  The link width sweep
shows what tensor parallelism asks of the links.  Writes ``build/scaling.json`` and
``build/sim/scaling.png`` (cycles against chips, with the ideal line).
"""

from __future__ import annotations

import json
import time

import numpy as np

from arch.config import TspConfig, get_config
from compiler.graph import compile_graph
from compiler.parallel import (
    best_variant,
    compile_parallel,
    golden_mlp,
    mlp_graph,
    placed,
    random_mlp,
    run_parallel,
)

from .build import build_root

#: the scaling rows: (config, links per end, bytes per cycle per superlane, rows, d, f)
SHAPES = (
    ("layer", 4, 16, 32, 256, 1024),
    ("layer", 4, 16, 32, 128, 1024),
    ("medium", 4, 16, 32, 128, 512),
)
#: the link sweep: the first shape with these link widths (bytes per cycle per superlane)
SWEEP = (1, 4)
CHIPS = (1, 2, 4)


def link_config(name: str, links: int, width: int) -> TspConfig:
    cfg = get_config(name).with_links()
    return cfg.replace(name=f"{name}+c2c{links}x{width}", c2c_links=links,
                       c2c_bytes_per_cycle=width)


def scale_row(cfg: TspConfig, rows: int, d: int, f: int, seed: int = 0,
              chips=CHIPS, one: int | None = None) -> list[dict]:
    """Cycles of the MLP on each chip count (``one``: the one-chip cycles, if known)."""
    mlp = random_mlp(d, f, seed)
    x = np.random.default_rng([seed, 1]).integers(-128, 128, (rows, d))
    want = golden_mlp(mlp, x)
    out = []
    for n in chips:
        t0 = time.monotonic()
        if n == 1:
            if one is not None:
                continue
            g = mlp_graph(mlp, rows)
            place, order = best_variant(g, cfg)
            cg = compile_graph(placed(g, place), cfg, order)
            got, cyc = cg.run_on_model({"x": x})
            exact, cycles, beats = bool(np.array_equal(got["y"], want)), [cyc], 0
            predicted = [cg.cycles]
            one = cyc
        else:
            comp = compile_parallel([mlp_graph(mlp, rows, n, i) for i in range(n)], cfg,
                                    search=True)
            res: list = []
            outs, cycles = run_parallel(comp, {"x": x}, res)
            exact = all(np.array_equal(o["y"], want) for o in outs)
            predicted = [c.cycles for c in comp]
            beats = sum(sum(r.link_beats.values()) for r in res) / n
        c = max(cycles)
        out.append({
            "config": cfg.name, "rows": rows, "d_model": d, "d_ff": f, "chips": n,
            "cycles": c, "predicted_equals_model": predicted == cycles,
            "bit_exact": exact, "speedup": round(one / c, 2), "ideal": round(one / n),
            "link_utilisation": round(beats / (c * 2 * cfg.c2c_links), 3),
            "link_bytes_per_cycle": cfg.c2c_links * cfg.superlanes * cfg.c2c_bytes_per_cycle,
            "seconds": round(time.monotonic() - t0, 1)})
    return out


def plot(rows: list[dict], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["config"], r["d_model"], r["d_ff"]), []).append(r)
    for (cfg, d, f), rs in groups.items():
        rs = sorted(rs, key=lambda r: r["chips"])
        line, = ax.plot([r["chips"] for r in rs], [r["cycles"] for r in rs], "o-",
                        label=f"{cfg}: d {d}, d_ff {f}")
        one = next((r["cycles"] for r in rs if r["chips"] == 1), None)
        if one:
            ax.plot(CHIPS, [one / n for n in CHIPS], ":", color=line.get_color())
    ax.set_xlabel("chips")
    ax.set_ylabel("cycles (dotted: ideal, one chip / chips)")
    ax.set_xticks(CHIPS)
    ax.set_title("Tensor-parallel MLP over C2C links (machine model)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_scaling(log=print) -> dict:
    rows = []
    log(f"{'config':<22} {'d':>4} {'d_ff':>5} {'chips':>5} {'cycles':>7} {'speed-up':>8} "
        f"{'ideal':>6} {'link util':>9} {'link B/cyc':>10} exact")
    one_of = {}
    for k, (name, links, width, r, d, f) in enumerate(SHAPES):
        widths = (width, *SWEEP) if k == 0 else (width,)
        for w in widths:
            cfg = link_config(name, links, w)
            key = (name, r, d, f)
            got = scale_row(cfg, r, d, f, one=one_of.get(key))
            for row in got:
                if row["chips"] == 1:
                    one_of[key] = row["cycles"]
            for row in got:
                rows.append(row)
                log(f"{row['config']:<22} {d:>4} {f:>5} {row['chips']:>5} "
                    f"{row['cycles']:>7} {row['speedup']:>7}x {row['ideal']:>6} "
                    f"{row['link_utilisation']:>9} {row['link_bytes_per_cycle']:>10} "
                    f"{row['bit_exact'] and row['predicted_equals_model']}")
    out = build_root() / "scaling.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1))
    png = build_root() / "sim" / "scaling.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    plot([r for r in rows if r["config"].endswith(f"x{SHAPES[0][2]}")
          or r["chips"] == 1], png)
    log(f"\nwrote {out} and {png}")
    return {"rows": rows, "json": str(out), "png": str(png)}


__all__ = ["run_scaling", "scale_row"]
