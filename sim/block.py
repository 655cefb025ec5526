"""The main job (`make sim`): the quantised attention + MLP block, compiled,
run on the Verilated chip, checked bit-exact, with predicted == measured cycles.

Steps: build the block (`golden.block.make_block`) and its input; compile it
(`compiler.compile_block`: every instruction's cycle fixed); run it on the
machine model (the reference timing and counters); generate and build the RTL
(cached); load program, weights, tables and input through the host interface
and run it (`tb/chip/test_run.py`); read the output back and check it against
the golden block, and the measured cycles and counters against the prediction
and the model.  A report goes to the terminal and, with the schedule picture and
every input file, to a fresh ``build/sim/<run>/`` (``build/sim/latest`` points at
the newest; earlier runs are kept).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from arch.config import TspConfig

from .build import build_sim, check_simulable
from .reports import new_run_dir
from .run import SimFailure, run_cocotb


@dataclass
class BlockSpec:
    seq: int = 16
    d_model: int = 32
    heads: int = 2
    d_ff: int = 64
    seed: int = 0
    causal: bool = True

    def tag(self) -> str:
        c = "causal" if self.causal else "full"
        return f"s{self.seq}-d{self.d_model}-h{self.heads}-f{self.d_ff}-{c}-seed{self.seed}"


def fitting_block(cfg: TspConfig, seqs: tuple[int, ...] = (16, 8)):
    """The make-sim default block (`BlockSpec`) compiled for ``cfg`` at the first sequence
    length of ``seqs`` that fits (seq 8 at `tiny`): ``(spec, block, compiled)``; the last
    `CompileError` if none does."""
    from compiler.compiled import compile_block
    from compiler.errors import CompileError
    from golden.block import make_block

    err = None
    for seq in seqs:
        spec = BlockSpec(seq=seq)
        block = make_block(spec.seed, spec.seq, spec.d_model, spec.heads, spec.d_ff,
                           causal=spec.causal)
        try:
            return spec, block, compile_block(block, cfg)
        except CompileError as exc:
            err = exc
    raise err


def first_difference(name: str, got: np.ndarray, exp: np.ndarray) -> str:
    idx = tuple(int(i) for i in np.argwhere(got != exp)[0])
    n = int(np.count_nonzero(got != exp))
    return (f"{name}{list(idx)}: RTL {int(got[idx])}, expected {int(exp[idx])} "
            f"({n} of {exp.size} elements differ)")


def run_block(cfg: TspConfig, spec: BlockSpec, *, lockstep: bool = False, waves: bool = False,
              out_dir: Path | None = None, plot: bool = True, log=print) -> dict:
    """Compile and run the block on the RTL; return the report (raises on mismatch)."""
    from compiler import check_seq_len
    from compiler.compiled import compile_block
    from golden.block import error_metrics, make_block

    t_start = time.monotonic()
    # Validation first: a bad shape or a block that does not fit raises here (ValueError /
    # CompileError) before anything is written, generated or built; the sequence length
    # before calibration (whose attention is quadratic in it).
    check_simulable(cfg)
    check_seq_len(cfg, spec.seq)
    block = make_block(spec.seed, spec.seq, spec.d_model, spec.heads, spec.d_ff,
                       causal=spec.causal)
    x_f = block.example_input(spec.seed)
    x_q = block.quantize_input(x_f)
    y_gold = block.forward_int(x_q)

    t0 = time.monotonic()
    comp = compile_block(block, cfg)
    compile_s = time.monotonic() - t0
    log(f"compiled {spec.tag()} for {cfg.name}: {comp.cycles} cycles predicted, lower bound "
        f"{comp.lower_bound} ({compile_s:.1f} s)")

    t0 = time.monotonic()
    y_model, model_res, _ = comp.run_on_model(x_q)
    model_s = time.monotonic() - t0
    problems: list[str] = []
    if not np.array_equal(y_model, y_gold):
        problems.append("machine model: " + first_difference("y", y_model, y_gold))
    if model_res.cycles != comp.cycles:
        problems.append(f"machine model ran {model_res.cycles} cycles, compiler predicted "
                        f"{comp.cycles}")

    # files for the chip run
    if out_dir is None:
        out_dir = new_run_dir(f"block-{cfg.name}-{spec.tag()}")
    out_dir.mkdir(parents=True, exist_ok=True)
    image = comp.sram_image(x_q)
    prog_path, img_path = write_program(out_dir, comp.program, image)
    wanted: list[tuple[str, int]] = []

    def record(s, a):
        wanted.append((s, int(a)))
        return np.zeros(cfg.vector_length, np.uint8)

    comp.read_output(record)
    rb_path = out_dir / "readback.json"
    rb_path.write_text(json.dumps(sorted(set(wanted))))
    rtl_out = out_dir / "readback.npz"

    sim = build_sim(cfg, "chip", waves=waves, log=log)
    log(f"running on the Verilated chip: {comp.cycles} cycles predicted"
        f"{', lock-step with the machine model' if lockstep else ''}"
        f"{f', {sim.wave_format.upper()} waves' if waves else ''} (loading the program and "
        f"{sum(len(d) for d in image.values())} SRAM vectors through the host interface "
        "first)")
    run = run_cocotb(sim, "tb.chip.test_run", name=f"block-{cfg.name}-{spec.tag()}",
                     params={"program": str(prog_path), "image": str(img_path),
                             "readback": str(rb_path), "out": str(rtl_out),
                             "max_cycles": 4 * comp.cycles + 10_000, "lockstep": lockstep},
                     waves=waves, log=log)
    s = run.summary
    with np.load(rtl_out) as z:
        vecs = {k: z[k] for k in z.files}
    y_rtl = comp.read_output(lambda sl, a: vecs[f"{sl}/{a}"])

    st, ctr = s["status"], s["counters"]
    if st["error"]:
        problems.append(f"RTL stopped on a fault: code {st['error_code']} at slice "
                        f"{cfg.slices[st['error_slice']].name} in cycle {st['error_cycle']}")
    bit_exact = bool(np.array_equal(y_rtl, y_gold))
    if not bit_exact:
        problems.append("RTL output: " + first_difference("y", y_rtl, y_gold))
    if ctr["cycles"] != comp.cycles:
        problems.append(f"cycles measured (chip CYCLES) {ctr['cycles']} != predicted "
                        f"{comp.cycles}")
    if s["cycles_clock"] != comp.cycles:
        problems.append(f"cycles counted by the testbench clock {s['cycles_clock']} != "
                        f"predicted {comp.cycles}")
    for what, exp in (("busy", model_res.busy), ("issued", model_res.issued),
                      ("mvm", model_res.mxm_mvm_cycles)):
        for name, v in exp.items():
            if name in ctr[what] and ctr[what][name] != v:
                problems.append(f"counter {what}[{name}]: RTL {ctr[what][name]}, model {v}")
    n_planned = comp.useful_mvms + sum(comp.overhead_mvms.values())
    if sum(ctr["mvm"].values()) != n_planned:
        problems.append(f"MVMs counted by the chip {sum(ctr['mvm'].values())} != the "
                        f"schedule's useful + overhead {n_planned}")
    problems += [f"lock-step: {e}" for e in s.get("lockstep_errors", [])]

    metrics = error_metrics(block, x_f)
    stats = comp.stats()
    n_mxm = len(cfg.slices_of("MXM"))
    wall = time.monotonic() - t_start
    report = {
        "config": cfg.name,
        "shape": {"seq": spec.seq, "d_model": spec.d_model, "heads": spec.heads,
                  "d_ff": spec.d_ff, "causal": spec.causal},
        "seed": spec.seed,
        "bit_exact": bit_exact and not st["error"],
        "cycles_predicted": comp.cycles,
        "cycles_measured": ctr["cycles"],
        "cycles_clock": s["cycles_clock"],
        "cycles_model": model_res.cycles,
        "cycles_lower_bound": comp.lower_bound,
        "lower_bound_terms": stats["bounds"],
        "ratio_to_lower_bound": round(comp.cycles / comp.lower_bound, 3),
        # only the block's own matmul products count; the lowering's transposes,
        # re-emits and row sums are shown beside it (the chip counts every MVM, and
        # its total is checked against the schedule's above)
        "mxm_utilization": round(comp.useful_mvms / (ctr["cycles"] * n_mxm), 4)
        if ctr["cycles"] else 0.0,
        "mxm_utilization_all_mvms": round(sum(ctr["mvm"].values()) / (ctr["cycles"] * n_mxm), 4)
        if ctr["cycles"] else 0.0,
        "mvm_chip": sum(ctr["mvm"].values()),
        "mvm_useful": comp.useful_mvms,
        "mvm_overhead": comp.overhead_mvms,
        "busy_pct_by_kind": stats["busy_pct_by_kind"],
        "counters_match_model": not any(p.startswith("counter") for p in problems),
        "cosine_vs_float": round(metrics["cosine_vs_float"], 6),
        "max_abs_err_lsb_vs_float": metrics["max_abs_err_lsb"],
        "frac_within_1lsb_vs_float": round(metrics["frac_within_1lsb"], 4),
        "sim_cycles_per_second": round(s["sim_cycles_per_second"], 1),
        "wall_seconds": round(wall, 1),
        "compile_seconds": round(compile_s, 2),
        "model_seconds": round(model_s, 2),
        "verilog_seconds": round(sim.verilog.seconds, 1),
        "verilog_cached": sim.verilog.cached,
        "verilator_build_seconds": round(sim.seconds, 1),
        "verilator_cached": sim.cached,
        "verilator_pgo": sim.pgo,
        "run_seconds": round(run.seconds, 1),
        "instruction_words": sum(stats["words"].values()),
        "lockstep": lockstep,
        "lockstep_passed": lockstep and not s.get("lockstep_errors"),
        # stream lanes whose value depends on state the program never defined (weight
        # rows it never loaded, ...): the RTL powers up random there, so not compared
        "lockstep_undefined_lanes": s.get("lockstep_undefined_lanes", 0),
        "problems": problems,
        "log": str(run.log),
        "waves": str(run.waves) if run.waves else None,
        "wave_format": sim.wave_format,
        "out_dir": str(out_dir),
    }
    return write_report(report, comp, out_dir, plot)


def write_program(out_dir: Path, program, image: dict) -> tuple[Path, Path]:
    """``prog.bin`` and ``image.npz`` (keys ``"<slice>/<addr>"``) for `tb/chip/test_run.py`;
    ``image``: ``{slice: {addr: vector}}`` or ``{(slice, addr): vector}``."""
    prog_path, img_path = out_dir / "prog.bin", out_dir / "image.npz"
    prog_path.write_bytes(program.to_bytes())
    flat = ({(s, a): v for s, d in image.items() for a, v in d.items()}
            if all(isinstance(k, str) for k in image) else image)
    np.savez(img_path, **{f"{s}/{a}": v for (s, a), v in flat.items()})
    return prog_path, img_path


def run_on_chip(cfg: TspConfig, out_dir: Path, name: str, program, image: dict, readback,
                max_cycles: int, steps: list | None = None, log=print):
    """Load ``program`` and ``image`` through the host interface of the (cached) chip
    build, run to ``done`` (`tb/chip/test_run.py`) and read back the ``readback`` (slice,
    addr) vectors; with ``steps`` (per run, its host writes ``[((slice, addr), vector)]``)
    one run per step, the vectors read after each.  Returns ``(vectors, run, build)``:
    vectors keyed ``"slice/addr"`` (``"step/slice/addr"`` with steps)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    prog_path, img_path = write_program(out_dir, program, image)
    rb_path, rtl_out = out_dir / "readback.json", out_dir / "readback.npz"
    rb_path.write_text(json.dumps(sorted({(s, int(a)) for s, a in readback})))
    params = {"program": str(prog_path), "image": str(img_path), "readback": str(rb_path),
              "out": str(rtl_out), "max_cycles": max_cycles}
    if steps is not None:
        params["steps"] = str(out_dir / "steps.npz")
        np.savez(params["steps"], **{f"{p}/{s}/{a}": v for p, writes in enumerate(steps)
                                     for (s, a), v in writes})
    sim = build_sim(cfg, "chip", log=log)
    run = run_cocotb(sim, "tb.chip.test_run", name=name, params=params, log=log)
    with np.load(rtl_out) as z:
        return {k: z[k] for k in z.files}, run, sim


def write_report(report: dict, comp, out_dir: Path, plot: bool) -> dict:
    """``report.json``, ``schedule.json`` and (``plot``) ``schedule.png`` of a run into
    ``out_dir``; the report gains their paths."""
    report["report_json"] = str(out_dir / "report.json")
    (out_dir / "schedule.json").write_text(json.dumps(comp.schedule_json()))
    if plot:
        from compiler.plot import plot_schedule

        report["schedule_png"] = str(plot_schedule(comp, out_dir / "schedule.png"))
    (out_dir / "report.json").write_text(json.dumps(report, indent=1))
    return report


def print_report(r: dict, log=print) -> None:
    sh = r["shape"]
    log("")
    log("== transformer block on the Verilated TSP ==")
    log(f"config            {r['config']}")
    log(f"shape             seq {sh['seq']}, d_model {sh['d_model']}, heads {sh['heads']}, "
        f"d_ff {sh['d_ff']}, {'causal' if sh['causal'] else 'non-causal'}; seed {r['seed']}")
    log(f"bit_exact: {str(r['bit_exact']).lower()}")
    three = (r["cycles_predicted"], r["cycles_measured"], r["cycles_clock"])
    eq = "==" if len(set(three)) == 1 else "!="
    log(f"cycles            predicted {eq} chip CYCLES {eq} testbench clock: "
        f"{f' {eq} '.join(map(str, three))} (machine model {r['cycles_model']})")
    log(f"lower bound       {r['cycles_lower_bound']} cycles (ratio "
        f"{r['ratio_to_lower_bound']}); terms {r['lower_bound_terms']}")
    log(f"MXM utilisation   {100 * r['mxm_utilization']:.1f} % useful ({r['mvm_useful']} matmul "
        f"MVMs); {100 * r['mxm_utilization_all_mvms']:.1f} % with the overhead MVMs "
        f"{r['mvm_overhead']}")
    busy = ", ".join(f"{k} {v} %" for k, v in r["busy_pct_by_kind"].items())
    log(f"busy by kind      {busy}")
    log(f"counters          {'== machine model' if r['counters_match_model'] else 'DIFFER'}")
    log(f"vs float64        cosine {r['cosine_vs_float']}, max |err| "
        f"{r['max_abs_err_lsb_vs_float']} LSB, {100 * r['frac_within_1lsb_vs_float']:.1f} % "
        "within 1 LSB")
    if r.get("lockstep"):
        log("lock-step         ran: every stream register of every superlane, every cycle, vs "
            "the machine model: " + ("passed" if r.get("lockstep_passed") else "FAILED")
            + (f" ({r['lockstep_undefined_lanes']} lane-cycles depend on state the program "
               "never defined, not compared)" if r.get("lockstep_undefined_lanes") else ""))
    else:
        log("lock-step         not run (LOCKSTEP=1 compares every stream register every cycle)")

    def part(what, key, cached):
        return (f"{what} cached (took {r[key]} s when made)" if r.get(cached)
                else f"{what} {r[key]} s")

    build = "Verilator build" + (" (profile-guided)" if r.get("verilator_pgo") else "")
    log(f"simulation        {r['sim_cycles_per_second']} cycles/s; wall {r['wall_seconds']} s: "
        f"{part('Verilog', 'verilog_seconds', 'verilog_cached')}, "
        f"{part(build, 'verilator_build_seconds', 'verilator_cached')}, "
        f"chip run {r.get('run_seconds', '?')} s")
    if r.get("schedule_png"):
        log(f"schedule          {r['schedule_png']}")
    log(f"report            {r['report_json']}")
    if r.get("waves"):
        log(f"waves ({(r.get('wave_format') or 'fst').upper()})       {r['waves']}")


__all__ = ["BlockSpec", "SimFailure", "print_report", "run_block", "run_on_chip",
           "write_program", "write_report"]
