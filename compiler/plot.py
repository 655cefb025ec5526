"""A Gantt chart of a compiled schedule (matplotlib, Agg backend).

One row per slice (west at the top, as on the floorplan), cycles left to right.  Every
issued instruction is a bar from its issue cycle to its last effect (issue + latency),
drawn light, with its issue cycle drawn solid, coloured by kind.  White space in a row is
a cycle in which that slice does nothing; the VXM row is the one to look at first (one
instruction per cycle at most, the bottleneck of this block).  An MXM row is split: weight
loads (LW/LWT, also those merged into an MVM) in its upper half, MVMs below.  A row with
no instruction at all says so.  The legend and a caption under the axes say the same,
so the picture reads without this text.
"""

from __future__ import annotations

from pathlib import Path

#: one colour per slice instruction of the ISA (`arch.isa.DEFS`; a test checks that none is
#: missing), in legend order
KIND_COLOURS = {
    "READ": "#4e79a7", "WRITE": "#59a14f", "GATHER": "#76b7b2", "VXM": "#f28e2b",
    "MVM": "#e15759", "LW": "#ff9da7", "LWT": "#b07aa1", "IW": "#000000", "SHS": "#9c755f",
    "SCATTER": "#edc948", "RMAX": "#bab0ac", "RSUM": "#8c564b", "RMIN": "#d4a6c8",
    "PMAP": "#17becf", "PERM": "#9edae5", "SHV": "#c49c94", "DIST": "#7f7f7f",
    "ROTS": "#bcbd22", "ROTV": "#dbdb8d", "TPUT": "#1f77b4", "TGET": "#aec7e8",
    "SEND": "#2ca02c", "RECV": "#98df8a",
}


#: printed under the picture
CAPTION = ("Light bar: an instruction in flight, from its issue cycle to its last effect; "
           "solid mark: its issue cycle.  MXM rows: weight loads (LW/LWT) in the upper half, "
           "MVMs in the lower half.  % = cycles the slice is busy.  An empty row is a slice "
           "this program gives no instruction (its queue only halts).")


def plot_schedule(compiled, path: str | Path, max_width: float = 60.0) -> Path:
    import matplotlib.pyplot as plt

    fig = schedule_figure(compiled, max_width)
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def schedule_figure(compiled, max_width: float = 60.0):
    """The matplotlib figure of `plot_schedule` (the caller closes it)."""
    need = ("emitted", "busy", "lower_bound", "shape_label")
    if not all(hasattr(compiled, a) for a in need):
        raise TypeError(f"plot_schedule draws a compiled block, decode step, layer or model "
                        f"(compile_block, compile_decode, ...: they keep their schedule); "
                        f"a {type(compiled).__name__} has no "
                        f"{next(a for a in need if not hasattr(compiled, a))}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    cfg = compiled.cfg
    cycles = compiled.cycles
    slices = [s.name for s in cfg.slices]
    row = {s: len(slices) - 1 - i for i, s in enumerate(slices)}
    width = min(max_width, 8 + cycles / 60)
    fig, ax = plt.subplots(figsize=(width, 1.9 + 0.45 * len(slices)))
    spans: dict[tuple[str, str], list] = {}
    issues: dict[tuple[str, str], list] = {}
    for name, q in compiled.emitted.queues.items():
        for c, ins, lat in q.issued:
            mn = ins.mnemonic
            if mn == "MVM" and ins["ld"]:
                issues.setdefault((name, "LW" if ins["ld"] == 1 else "LWT"), []).append((c, 1))
            spans.setdefault((name, mn), []).append((c, max(lat, 0) + 1))
            issues.setdefault((name, mn), []).append((c, 1))
    for (name, mn), bars in spans.items():
        ax.broken_barh(bars, (row[name] - 0.35, 0.7), facecolors=KIND_COLOURS.get(mn, "grey"),
                       alpha=0.25, linewidth=0)
    for (name, mn), bars in issues.items():
        y = row[name] - 0.35 if mn not in ("LW", "LWT") else row[name] - 0.35
        h = 0.7 if mn not in ("LW", "LWT") else 0.3
        if (name, "MVM") in issues and mn in ("LW", "LWT"):
            y = row[name] + 0.05
        ax.broken_barh(bars, (y, h), facecolors=KIND_COLOURS.get(mn, "grey"), linewidth=0)
    ax.set_yticks([row[s] for s in slices])
    busy = compiled.busy
    ax.set_yticklabels([f"{s}  {100 * busy[s] / cycles:4.0f}%"
                        + ("\n(LW above MVM)" if cfg.slice(s).kind == "MXM" else "")
                        for s in slices], fontfamily="monospace")
    ax.set_xlim(0, cycles)
    ax.set_ylim(-0.8, len(slices) - 0.2)
    ax.set_xlabel("cycle (superlane 0)")
    ax.set_title(  # two lines: a variant config's name is long, a short schedule narrow
        f"{cfg.name}: {compiled.shape_label}\n{cycles} cycles, lower bound "
        f"{compiled.lower_bound} (x{compiled.ratio:.2f}), MXM utilisation "
        f"{100 * compiled.mxm_utilisation:.1f}%  (bars: issue..last effect; % = busy)",
        wrap=True)
    for s in slices:
        if not any(name == s for name, _mn in issues):
            ax.text(cycles / 2, row[s], "no instructions in this program", ha="center",
                    va="center", fontsize="small", fontstyle="italic", color="grey")
    order = list(KIND_COLOURS)
    used = sorted({mn for (_n, mn) in issues},
                  key=lambda m: order.index(m) if m in order else len(order))
    handles = [Patch(color=KIND_COLOURS.get(m, "grey"), label=m) for m in used]
    handles += [Patch(facecolor="grey", alpha=0.25, label="light: in flight"),
                Patch(facecolor="grey", label="solid: issue cycle")]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    ax.grid(axis="x", alpha=0.3)
    fig.text(0.01, 0.01, CAPTION, ha="left", va="bottom", fontsize="small", wrap=True)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig
