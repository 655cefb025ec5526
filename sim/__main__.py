"""Command line of the simulation flow (what the Makefile calls).

    python -m sim verilog --config small [--design fabric] [--no-build]
    python -m sim lint    --config small
    python -m sim fabric  --config small [--programs 8] [--seed 0] [--waves]
    python -m sim block   --config small --seq 16 --d-model 32 --heads 2 --d-ff 64 --seed 0
    python -m sim decode  --config small --context 16 --steps 16 (decode steps, KV cache)
    python -m sim layer   --config medium --model tiny --context 16 --steps 4 (a llama layer)
    python -m sim llm     --prompt "The capital of France is" --tokens 16 (SmolLM2 on full)
    python -m sim run     prog.s [--image data.json] [--dump MEM_E0:0:4] [--rtl] [--waves]
    python -m sim bench   [--no-rtl]
    python -m sim bench-rtl --config tiny,small [--threads 1,2] [--cold]
    python -m sim profile-rtl --config small [--runs 5] (instructions per cycle, valgrind)

Environment: TSP_CXX_OPT=-O1|-O2|-O3 (g++ level of the simulators' evaluation code),
TSP_MARCH=native|portable (the CPU it is compiled for: this machine's, or g++'s default),
TSP_PGO=1 (the chip's simulators built profile-guided, sim/pgo.py; make: PGO=1).

Exit status (sim/cli.py): 0 passed, 1 a run that failed (a mismatch, a fault, a build that
broke), 2 refused input (an argument, config or environment value; nothing ran).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from arch.config import get_config

from .build import (
    BuildError,
    build_root,
    build_sim,
    check_simulable,
    generate_verilog,
    lint,
)
from .cli import FAILED, PASSED, REFUSED, Refused
from .designs import DEFAULT_DESIGN, DESIGNS
from .run import SimFailure, run_cocotb
from .toolchain import ToolchainError

#: the one-chip fuzz campaign's defaults: simulator runs in parallel, programs per run
FUZZ_JOBS, FUZZ_BATCH = 2, 40


def _log(*args) -> None:
    print(*args, flush=True)


def _config(name):
    if name is not None and not str(name).strip():
        raise Refused("--config is empty: give a config name (e.g. tiny)")
    try:
        return get_config(name)
    except ValueError as e:
        raise Refused(str(e)) from None


def _configs(text: str) -> list:
    """A comma-separated --config list, every name checked, and every config small enough
    for the RTL, before anything is generated."""
    names = text.split(",")
    if any(not n.strip() for n in names):
        raise Refused(f"--config {text!r} has an empty name")
    cfgs = [_config(n.strip()) for n in names]
    for cfg in cfgs:
        check_simulable(cfg)  # TooLarge: refused
    return cfgs


def _seed(value: int, option: str = "--seed") -> None:
    if value < 0:
        raise Refused(f"{option} must be >= 0, got {value}")


def _for_design(cfg, design: str):
    """The config a design is generated for: each chip of a system design with its C2C
    links (`TspConfig.with_links`), as ``block --chips`` builds it."""
    from .designs import SYSTEM_DESIGNS

    return cfg.with_links() if design in SYSTEM_DESIGNS else cfg


def cmd_verilog(args) -> int:
    cfg = _for_design(_config(args.config), args.design)
    print(cfg.summary(), flush=True)
    if args.no_build:
        print(generate_verilog(cfg, args.design, force=args.force, log=_log).describe())
        return 0
    if args.force:  # regenerate; build_sim then reports it (and builds, if it changed)
        generate_verilog(cfg, args.design, force=True, log=_log)
    build_sim(cfg, args.design, log=_log)
    return 0


def cmd_lint(args) -> int:
    status = 0
    for cfg in [_for_design(c, args.design) for c in _configs(args.config)]:  # all first
        art = generate_verilog(cfg, args.design)
        rc, out = lint(art)
        warnings = [ln for ln in out.splitlines() if ln.startswith("%")]
        print(f"verilator --lint-only -Wall {art.design}/{cfg.name}: "
              f"{'clean' if rc == 0 and not warnings else f'{len(warnings)} problem(s)'}")
        if rc or warnings:
            print(out)
            status = 1
    return status


def cmd_fabric(args) -> int:
    cfg = _config(args.config)
    if args.programs < 1:
        raise Refused(f"--programs must be >= 1 (got {args.programs})")
    if args.cycles < 1:
        raise Refused(f"--cycles must be >= 1 (got {args.cycles})")
    _seed(args.seed)
    seeds = [args.seed * 1000 + i for i in range(args.programs)]
    print(cfg.summary())
    t0 = time.monotonic()
    sim = build_sim(cfg, "fabric", waves=args.waves, log=_log)
    try:
        run = run_cocotb(sim, "tb.fabric.test_fabric", name=f"fabric-{cfg.name}",
                         params={"seeds": seeds, "cycles": args.cycles}, waves=args.waves)
    except SimFailure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    s = run.summary
    print("\n== stream fabric on Verilator ==")
    print(f"config            {cfg.name} ({cfg.n_positions} positions, {cfg.superlanes} "
          f"superlane(s), {cfg.streams_per_direction} streams/direction)")
    print(f"programs (seeds)  {s['programs']} {seeds}")
    print(f"probe commands    {s['ops']}")
    print(f"reads compared    {s['reads_compared']} superlane-vectors "
          f"({s['reads_unknown']} of never-written streams skipped)")
    print(f"mismatches        {s['mismatches']}")
    print(f"simulated cycles  {s['cycles']} at {s['sim_cycles_per_second']:.0f} cycles/s")
    print(f"wall time         {time.monotonic() - t0:.1f} s")
    print(f"log               {run.log}")
    if run.waves:
        print(f"waves ({sim.wave_format.upper()})       {run.waves}")
    out = build_root() / "sim" / "fabric_report.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**s, "log": str(run.log),
                               "waves": str(run.waves) if run.waves else None}, indent=1))
    print(f"report            {out}")
    return 0 if s["mismatches"] == 0 else 1


def _sim_report(run, print_report) -> int:
    """Run a simulation that returns a report; print it; exit status 0 (passed) or 1 (a
    mismatch or a simulator failure); refused input (bad shape, does not fit) is
    `Refused`."""
    try:
        report = run(lambda *a: print(*a, flush=True))
    except SimFailure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return FAILED
    except (ValueError, FileNotFoundError) as e:  # bad shapes or files, a program that
        raise Refused(str(e)) from None  # does not fit (CompileError)
    print_report(report)
    if report["problems"]:
        print("\nFAIL:", file=sys.stderr)
        for p in report["problems"]:
            print(f"  {p}", file=sys.stderr)
        return FAILED
    return PASSED


def _check_system_built(chips: int) -> None:
    """`Refused` unless a system design of ``chips`` chips is built (saying which are)."""
    from golden.system import MAX_CHIPS

    from .system import SYSTEM_DESIGNS

    have = sorted(SYSTEM_DESIGNS.values())
    if chips not in have:
        raise Refused(f"CHIPS={chips}: systems of {', '.join(map(str, have))} chips are "
                      f"built (the model takes up to {MAX_CHIPS})")


def _check_block_shape(seq: int, seq_opt: str, args) -> None:
    """`Refused` unless the block's shape as the command line gives it is one (with the
    options' names: make_block's own messages name its parameters, n_heads, seq_len)."""
    for opt, make, v in ((seq_opt, "SEQ", seq), ("--d-model", "DMODEL", args.d_model),
                         ("--heads", "HEADS", args.heads), ("--d-ff", "DFF", args.d_ff)):
        if v < 1:
            raise Refused(f"{opt} (make: {make}=) must be >= 1, got {v}")
    if args.d_model % args.heads:
        raise Refused(f"--heads {args.heads} (make: HEADS=) must divide --d-model "
                      f"{args.d_model} (DMODEL=)")


def cmd_block(args) -> int:
    from .block import BlockSpec, print_report, run_block

    cfg = _config(args.config)
    _check_block_shape(args.seq, "--seq", args)
    if args.chips != 1:
        from .parallel import print_report as tp_report
        from .parallel import run_parallel_block

        _check_system_built(args.chips)
        if args.heads % args.chips or args.d_ff % args.chips:
            raise Refused(f"--chips {args.chips}: the block's {args.heads} heads and d_ff "
                          f"{args.d_ff} must split over the chips (--heads and --d-ff "
                          f"multiples of {args.chips}; make: HEADS=, DFF=)")
        if args.lockstep or args.waves:  # one chip's flow; the system has neither
            raise Refused("--lockstep and --waves are of one chip's run, not of --chips")
        print(cfg.with_links().summary(), flush=True)
        spec = BlockSpec(args.seq, args.d_model, args.heads, args.d_ff, args.seed,
                         not args.no_causal)
        return _sim_report(lambda log: run_parallel_block(cfg, args.chips, spec, log=log),
                           tp_report)
    spec = BlockSpec(args.seq, args.d_model, args.heads, args.d_ff, args.seed, not args.no_causal)
    print(cfg.summary(), flush=True)
    return _sim_report(lambda log: run_block(cfg, spec, lockstep=args.lockstep,
                                             waves=args.waves, log=log), print_report)


def cmd_decode(args) -> int:
    from .block import BlockSpec
    from .decode import print_report, run_decode

    cfg = _config(args.config)
    _check_block_shape(args.context, "--context", args)
    spec = BlockSpec(args.context, args.d_model, args.heads, args.d_ff, args.seed, True)
    print(cfg.summary(), flush=True)
    return _sim_report(lambda log: run_decode(cfg, spec, args.steps or args.context,
                                              log=log), print_report)


def cmd_layer(args) -> int:
    from .layer import print_report, run_layer

    cfg = _config(args.config or ("medium" if args.model == "tiny" else "layer"))
    _seed(args.seed)
    if args.chips != 1:
        from .tp_layer import print_report as tp_report
        from .tp_layer import run_tp_layer_sim

        _check_system_built(args.chips)
        print(cfg.with_links().summary(), flush=True)
        return _sim_report(lambda log: run_tp_layer_sim(
            cfg, args.chips, args.model, args.layer, args.context, args.steps, args.seed,
            log=log), tp_report)
    print(cfg.summary(), flush=True)
    return _sim_report(lambda log: run_layer(cfg, args.model, args.layer, args.context,
                                             args.steps, args.seed, log=log), print_report)


def cmd_model(args) -> int:
    from .model import print_report, run_model

    cfg = _config(args.config)
    _seed(args.seed)
    try:
        prompt = ([int(t) for t in args.prompt.split(",")] if args.prompt else None)
    except ValueError:
        raise Refused(f"--prompt must be comma-separated token ids, got "
                      f"{args.prompt!r}") from None
    print(cfg.summary(), flush=True)
    return _sim_report(lambda log: run_model(cfg, args.model, prompt, args.tokens,
                                             args.context, args.seed, log=log), print_report)


def cmd_llm(args) -> int:
    from .llm import print_report, run_llm

    cfg = _config(args.config)
    prompt = args.prompt
    if args.prompt_ids is not None:
        if not args.prompt_ids.strip():
            raise Refused("--prompt-ids is empty: give comma-separated token ids")
        try:
            prompt = [int(t) for t in args.prompt_ids.split(",")]
        except ValueError:
            raise Refused(f"--prompt-ids must be comma-separated token ids, got "
                          f"{args.prompt_ids!r}") from None
    try:
        sweep = [int(c) for c in args.sweep.replace(",", " ").split()]
    except ValueError:
        raise Refused(f"--sweep must be context lengths, got {args.sweep!r}") from None
    print(cfg.summary(), flush=True)
    return _sim_report(lambda log: run_llm(cfg, args.model, prompt, args.tokens, args.context,
                                           sweep, args.out, log=log), print_report)


def cmd_run(args) -> int:
    from .runprog import RunError, execute, prepare, print_report

    if args.max_cycles < 1:
        raise Refused(f"--max-cycles must be >= 1 (got {args.max_cycles})")
    if (args.waves or args.lockstep) and not args.rtl:
        raise Refused("--waves and --lockstep need --rtl (they are of the chip run)")
    try:
        run = prepare(args.program, config=args.config, image=args.image, dumps=args.dump)
    except (RunError, ValueError) as e:  # bad program, image, dump or config: nothing ran
        raise Refused(str(e)) from None
    if args.rtl:
        check_simulable(run.cfg)
    print(run.cfg.summary(), flush=True)
    try:
        rep = execute(run, rtl=args.rtl, waves=args.waves, lockstep=args.lockstep,
                      max_cycles=args.max_cycles, log=lambda *a: print(*a, flush=True))
    except SimFailure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    print_report(rep, run)
    return 1 if rep["problems"] else 0


def cmd_bench(args) -> int:
    from .bench import run_bench, run_decode_bench

    log = lambda *a: print(*a, flush=True)  # noqa: E731
    if args.decode is not None:
        rows = run_decode_bench(rtl=not args.no_rtl, log=log, only=args.decode)
        bad = [r for r in rows if not r["bit_exact_model"] or r.get("rtl_bit_exact") is False
               or r["model_cycles_every_step"] != [r["cycles_per_step"]]]
    else:
        rows = run_bench(rtl=not args.no_rtl, log=log, only=args.blocks)
        bad = [r for r in rows if "error" not in r and (r["cycles"] != r["model_cycles"]
                                                       or not r["bit_exact_model"]
                                                       or r.get("rtl_bit_exact") is False)]
    return 1 if bad else 0


def cmd_model_check(args) -> int:
    """``--model`` checked by name before anything is installed or loaded (the Makefile's
    model targets run it before installing the models package): ``tiny`` (the random
    llama of sim-layer/sim-model), a known model or an existing .gguf file."""
    from golden.llm import check_model

    if args.model != "tiny":
        try:
            check_model(args.model)
        except (ValueError, FileNotFoundError) as e:
            raise Refused(f"MODEL={args.model}: {e}") from None
    return PASSED


def cmd_llm_chips(args) -> int:
    from .llm_chips import run_llm_chips

    try:
        ks = [int(k) for k in args.chips.replace(",", " ").split()]
    except ValueError:
        ks = []
    if not ks or any(k < 1 or k > 16 for k in ks):
        raise Refused(f"--chips {args.chips!r}: chip counts in 1..16, e.g. "
                      f"\"1 2 4\"")
    if args.tokens < 1:
        raise Refused(f"--tokens must be >= 1 (got {args.tokens})")
    if not args.prompt:
        raise Refused("--prompt is empty: give some text")
    try:
        rep = run_llm_chips(args.model, ks, args.prompt, args.tokens,
                            log=lambda *a: print(*a, flush=True))
    except (ValueError, FileNotFoundError) as e:  # unknown model, a prompt of no tokens
        raise Refused(str(e)) from None
    print(f"\n{'chips':>5} {'mode':>8} {'config':>8} {'MiB/chip':>8} {'layers':>22} "
          f"{'cycles/token':>12} {'tokens/s':>9} {'pipelined':>10}")
    for r in rep["rows"]:
        print(f"{r['chips']:>5} {r['mode']:>8} {r['config']:>8} "
              f"{r['sram_mib_per_chip']:>8.0f} {str(r['layers_per_chip']):>22} "
              f"{r['cycles_per_token']:>12} {r['tokens_per_second']:>9} "
              f"{r['pipelined_tokens_per_second'] if r['mode'] == 'pipeline' else '':>10}")
    print(f"report {rep['json']}")
    for p in rep["problems"]:
        print(f"FAIL: {p}", file=sys.stderr)
    return 1 if rep["problems"] else 0


def cmd_scaling(args) -> int:
    from .scaling import run_scaling

    rep = run_scaling(log=lambda *a: print(*a, flush=True))
    bad = [r for r in rep["rows"] if not (r["bit_exact"] and r["predicted_equals_model"])]
    for r in bad:
        print(f"FAIL: {r['config']} d {r['d_model']} d_ff {r['d_ff']} on {r['chips']} chips: "
              "not bit-exact or cycles differ from the prediction", file=sys.stderr)
    return 1 if bad else 0


def cmd_bench_rtl(args) -> int:
    """Generation and build times, load time and simulated cycles per second of the chip,
    driven by cocotb and by the bare C++ harness (sim/bench_rtl.py)."""
    from .bench_rtl import run_bench_rtl

    configs = _configs(args.config)  # all valid first
    try:
        threads = tuple(dict.fromkeys(int(t) for t in args.threads.split(",")))
    except ValueError:
        raise Refused(f"--threads must be comma-separated thread counts, got "
                      f"{args.threads!r}") from None
    if 1 not in threads or min(threads) < 1:
        raise Refused(f"--threads {args.threads}: counts >= 1, with 1 among them "
                      "(the single-threaded run is the benchmark's reference)")
    rows = run_bench_rtl(configs, cold=args.cold, threads=threads,
                         log=lambda *a: print(*a, flush=True))
    bad = [r for r in rows if r["problems"]]
    for r in bad:
        print(f"FAIL {r['config']}: {'; '.join(r['problems'])}", file=sys.stderr)
    return 1 if bad else 0


def cmd_profile_rtl(args) -> int:
    """Instructions per simulated cycle of the bare harness, by Verilated module class
    (sim/profile_rtl.py; needs valgrind)."""
    from .profile_rtl import ProfileError, run_profile_rtl

    configs = _configs(args.config)  # all valid first
    try:
        run_profile_rtl(configs, runs=args.runs, log=lambda *a: print(*a, flush=True))
    except ProfileError as e:
        raise Refused(str(e)) from None
    return PASSED


def cmd_fuzz(args) -> int:
    from pathlib import Path

    from .fuzz import fuzz, replay

    if args.x_seed is not None and not args.replay:
        raise Refused("--x-seed is the X seed of a --replay (a campaign gives each "
                      "batch its own, from --seed)")
    if args.replay is not None and not args.replay.strip():
        raise Refused("--replay is empty: give a failure's directory")
    if args.chips not in (1, 2, 4):
        raise Refused(f"--chips must be 1 (one chip), 2 or 4, got {args.chips}")
    if args.chips > 1:
        given = [o for o, v in (("--kinds", args.kinds), ("--jobs", args.jobs),
                                ("--batch", args.batch), ("--no-shrink", args.no_shrink or None))
                 if v is not None]
        if given:
            raise Refused(f"{', '.join(given)} apply to the one-chip fuzz, not "
                          f"to --chips {args.chips}")
    try:
        if args.replay and (Path(args.replay) / "case.json").is_file() and "chips" in \
                json.loads((Path(args.replay) / "case.json").read_text()):
            from .fuzz_system import replay_system
            return 0 if replay_system(Path(args.replay)) else 1
        if args.replay:
            return 0 if replay(Path(args.replay), x_seed=args.x_seed)["ok"] else 1
        if args.chips > 1:
            from .fuzz_system import fuzz_system, text
            if args.n < 1:
                raise ValueError(f"-n must be >= 1 (got {args.n})")
            _seed(args.seed)
            rep = fuzz_system(_config(args.config), args.n, args.seed, args.chips)
            print(text(rep))
            return 1 if rep["failures"] else 0
        kinds = args.kinds.split(",") if args.kinds else None
        jobs = FUZZ_JOBS if args.jobs is None else args.jobs
        batch = FUZZ_BATCH if args.batch is None else args.batch
        if args.n < 1 or jobs < 1 or batch < 1:
            raise ValueError(f"-n, --jobs and --batch must be >= 1 (got {args.n}, "
                             f"{jobs}, {batch})")
        rep = fuzz(_config(args.config), args.n, args.seed, kinds=kinds, batch=batch,
                   jobs=jobs, do_shrink=not args.no_shrink)
    except (ValueError, FileNotFoundError) as e:  # bad arguments or reproducer: no build
        raise Refused(str(e)) from None
    print(rep.text())
    return 1 if rep.failures else 0


def cmd_coverage(args) -> int:
    from .coverage import run_coverage

    if args.n < 0:
        raise Refused(f"-n must be >= 0 (got {args.n})")
    _seed(args.seed)
    rep = run_coverage(_config(args.config), args.n, args.seed)
    return 0 if rep["code"] else 1


def cmd_cost(args) -> int:
    from .cost_report import PNR_ORDER, report_cost, run_cost

    if args.report:
        return report_cost(log=lambda *a: print(*a, flush=True))

    if args.pnr_timeout <= 0:
        raise Refused(f"--pnr-timeout must be > 0 seconds (got {args.pnr_timeout})")
    pnr_units = tuple(args.pnr_units.split(",")) if args.pnr_units else PNR_ORDER
    bad = sorted(set(pnr_units) - set(PNR_ORDER))
    if bad:
        raise Refused(f"--pnr-units: unknown {', '.join(bad)}; "
                      f"choose from {', '.join(PNR_ORDER)}")
    run_cost(_config(args.config), pnr=not args.no_pnr, do_sweep=not args.no_sweep,
             chip_ecp5=args.chip_ecp5, pnr_timeout=args.pnr_timeout, pnr_units=pnr_units,
             log=lambda *a: print(*a, flush=True))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sim", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("verilog", help="generate Verilog (and build it with Verilator)")
    p.add_argument("--config", default="small")
    p.add_argument("--design", default=DEFAULT_DESIGN, choices=sorted(DESIGNS))
    p.add_argument("--no-build", action="store_true", help="only generate the Verilog")
    p.add_argument("--force", action="store_true", help="regenerate even if cached")
    p.set_defaults(func=cmd_verilog)
    p = sub.add_parser("lint", help="verilator --lint-only -Wall on the generated Verilog")
    p.add_argument("--config", default="tiny,small", help="comma-separated configs")
    p.add_argument("--design", default=DEFAULT_DESIGN, choices=sorted(DESIGNS))
    p.set_defaults(func=cmd_lint)
    p = sub.add_parser("fabric", help="run the stream-fabric testbench and print a summary")
    p.add_argument("--config", default="small")
    p.add_argument("--programs", type=int, default=8)
    p.add_argument("--cycles", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--waves", action="store_true", help="dump a waveform (FST, or VCD "
                   "where FST cannot be built)")
    p.set_defaults(func=cmd_fabric)
    p = sub.add_parser("block", help="the main job: the compiled block on the RTL")
    p.add_argument("--config", default="small")
    p.add_argument("--seq", type=int, default=16)
    p.add_argument("--d-model", type=int, default=32)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--d-ff", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-causal", action="store_true")
    p.add_argument("--chips", type=int, default=1,
                   help="2 or 4: the block tensor-parallel on that many linked chips")
    p.add_argument("--lockstep", action="store_true",
                   help="compare every stream register every cycle with the machine model")
    p.add_argument("--waves", action="store_true", help="dump a waveform (FST, or VCD "
                   "where FST cannot be built)")
    p.set_defaults(func=cmd_block)
    p = sub.add_parser("decode", help="decode steps of the block on the RTL, KV cache in "
                       "SRAM")
    p.add_argument("--config", default="small")
    p.add_argument("--context", type=int, default=16, help="maximum context (cache positions)")
    p.add_argument("--steps", type=int, default=0, help="decode steps (default: the context)")
    p.add_argument("--d-model", type=int, default=32)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--d-ff", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("layer", help="a llama decoder layer's decode steps on the RTL")
    p.add_argument("--config", default=None, help="default: medium for the tiny model, "
                   "layer (sized for a SmolLM2-135M layer) for a real one")
    p.add_argument("--model", default="tiny", help="'tiny' (a random llama written on the "
                   "fly) or a llama .gguf path / model name")
    p.add_argument("--layer", type=int, default=0)
    p.add_argument("--context", type=int, default=16, help="KV cache positions")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chips", type=int, default=1, help="tensor parallel over that many "
                   "linked chips (one Verilated system; the config gets C2C links)")
    p.set_defaults(func=cmd_layer)

    p = sub.add_parser("model", help="a whole llama decoding token by token on the RTL")
    p.add_argument("--config", default="layer")
    p.add_argument("--model", default="tiny", help="'tiny' (a random 2-layer llama written "
                   "on the fly) or a llama .gguf path / model name")
    p.add_argument("--prompt", default="", help="comma-separated token ids (default: 4 "
                   "random ones from the seed)")
    p.add_argument("--tokens", type=int, default=8)
    p.add_argument("--context", type=int, default=16, help="KV cache positions")
    p.add_argument("--seed", type=int, default=2)
    p.set_defaults(func=cmd_model)

    p = sub.add_parser("llm", help="a whole llama generating text on the machine model of "
                       "the full chip: tokens/s, time to first token, bounds")
    p.add_argument("--config", default="full")
    p.add_argument("--model", default="smollm2-135m", help="a llama .gguf path / model name, "
                   "or 'tiny' (a random 2-layer llama)")
    p.add_argument("--prompt", default="The capital of France is", help="prompt text")
    p.add_argument("--prompt-ids", default=None, help="comma-separated token ids instead of "
                   "--prompt")
    p.add_argument("--tokens", type=int, default=16)
    p.add_argument("--context", type=int, default=None, help="compiled maximum context "
                   "(default: the smallest power of two >= prompt + tokens, at least 16)")
    p.add_argument("--sweep", default="", help="other contexts to compile for the cycles-"
                   "against-context plot, e.g. '64 128 256'")
    p.add_argument("--out", default=None, help="output directory (default build/llm)")
    p.set_defaults(func=cmd_llm)

    p = sub.add_parser("run", help="run your own program (.s, .bin or .py) on the machine "
                       "model and, with --rtl, on the Verilated chip, compared")
    p.add_argument("program", help="assembly (.s), program binary (.bin) or Python (.py)")
    p.add_argument("--config", default=None,
                   help="config (default: the program's .config, else small)")
    p.add_argument("--image", metavar="FILE", help="SRAM contents: .npz or .json with keys "
                   "SLICE/ADDR")
    p.add_argument("--dump", action="append", default=[], metavar="SLICE:ADDR[:COUNT]",
                   help="SRAM vectors to print after the run (repeatable)")
    p.add_argument("--rtl", action="store_true", help="also run on the Verilated chip")
    p.add_argument("--waves", action="store_true", help="with --rtl: dump a waveform")
    p.add_argument("--lockstep", action="store_true",
                   help="with --rtl: compare every stream register every cycle with the model")
    p.add_argument("--max-cycles", type=int, default=100_000)
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("bench", help="schedule quality table + RTL simulation speed")
    p.add_argument("--no-rtl", action="store_true", help="machine model only")
    p.add_argument("--blocks", default=None, metavar="TEXT",
                   help="only the block rows whose config contains TEXT (no decode or layer "
                        "tables), written to bench-blocks.json in the build directory "
                        "(build/, or $TSP_BUILD_DIR)")
    p.add_argument("--decode", default=None, metavar="TEXT",
                   help="only the decode-step rows whose config contains TEXT, written to "
                        "bench-decode-rows.json in the build directory")
    p.set_defaults(func=cmd_bench)
    p = sub.add_parser("model-check", help="refuse a --model that names no model (tiny, a "
                       "known name or a .gguf file), before anything is installed")
    p.add_argument("--model", required=True)
    p.set_defaults(func=cmd_model_check)
    p = sub.add_parser("llm-chips", help="SmolLM2-135M on K chips too small to hold it "
                       "alone (pipeline over C2C, machine model): tokens/s against K")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--chips", default="1 2 4", help="chip counts, e.g. \"1 2 4\"")
    p.add_argument("--prompt", default="The capital of France is")
    p.add_argument("--tokens", type=int, default=4)
    p.set_defaults(func=cmd_llm_chips)
    p = sub.add_parser("scaling", help="a tensor-parallel MLP on 1, 2 and 4 linked chips "
                       "(machine model): cycles, speed-up, link utilisation, scaling.png")
    p.set_defaults(func=cmd_scaling)
    p = sub.add_parser("bench-rtl", help="RTL generation/build times and simulation speed")
    p.add_argument("--config", default="tiny,small")
    p.add_argument("--threads", default="1,2",
                   help="Verilator threads of the bare-harness builds (comma-separated)")
    p.add_argument("--cold", action="store_true",
                   help="build everything afresh in a temporary directory (cold times)")
    p.set_defaults(func=cmd_bench_rtl)
    p = sub.add_parser("profile-rtl", help="instructions per simulated cycle by module "
                       "class (the bare harness under valgrind's callgrind)")
    p.add_argument("--config", default="small")
    p.add_argument("--runs", type=int, default=5,
                   help="runs of the block in the shorter of the two profiled runs")
    p.set_defaults(func=cmd_profile_rtl)
    p = sub.add_parser("fuzz", help="differential fuzzing: random programs, chip vs model")
    p.add_argument("--config", default="small")
    p.add_argument("-n", type=int, default=100, help="number of programs")
    p.add_argument("--seed", type=int, default=0, help="base seed (case i: seed*1e6+i)")
    p.add_argument("--kinds", default=None, help="comma-separated generator kinds (default "
                   "all)")
    p.add_argument("--jobs", type=int, default=None,
                   help=f"simulator runs in parallel (default {FUZZ_JOBS})")
    p.add_argument("--batch", type=int, default=None,
                   help=f"programs per simulator run (default {FUZZ_BATCH})")
    p.add_argument("--no-shrink", action="store_true", help="do not shrink failing programs")
    p.add_argument("--chips", type=int, default=1, help="2 or 4: random C2C programs over "
                   "that many linked chips (one Verilated system)")
    p.add_argument("--replay", metavar="DIR", help="run a saved reproducer (build/fuzz/...)")
    p.add_argument("--x-seed", type=int, default=None,
                   help="X seed for --replay (default: the one it failed with)")
    p.set_defaults(func=cmd_fuzz)
    p = sub.add_parser("coverage", help="Verilator line/toggle coverage per slice and "
                       "functional ISA coverage of the fuzz + directed programs")
    p.add_argument("--config", default="tiny",
                   help="the config whose chip is built with coverage (default tiny)")
    p.add_argument("-n", type=int, default=200, help="number of fuzz programs")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the fuzz programs (default 0)")
    p.set_defaults(func=cmd_coverage)
    p = sub.add_parser("cost", help="area and clock rate: yosys synthesis per unit, nextpnr "
                       "ECP5 place and route of what fits, config sweep (build/cost.json)")
    p.add_argument("--config", default="tiny")
    p.add_argument("--no-pnr", action="store_true", help="synthesis only")
    p.add_argument("--no-sweep", action="store_true", help="no config sweep")
    p.add_argument("--chip-ecp5", action="store_true",
                   help="also map the whole chip to ECP5 (slow; default: sum of its units)")
    p.add_argument("--pnr-timeout", type=float, default=900,
                   help="seconds nextpnr gets per unit (default 900)")
    p.add_argument("--pnr-units", default="",
                   help="comma-separated units to place and route (default all that fit)")
    p.add_argument("--report", action="store_true",
                   help="no synthesis: the tables again from build/cost.json (and what each "
                   "addition costs, recomputed from its units)")
    p.set_defaults(func=cmd_cost)
    args = ap.parse_args(argv)
    try:
        return args.func(args)
    except Refused as e:  # (TooLarge, ChoiceError too) nothing ran
        print(f"error: {e}", file=sys.stderr)
        return REFUSED
    except (BuildError, ToolchainError) as e:
        print(f"error: {e}", file=sys.stderr)
        return FAILED


if __name__ == "__main__":
    sys.exit(main())
