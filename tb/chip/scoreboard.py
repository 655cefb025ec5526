"""Run a program on the machine model and compare the chip's end state with it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from arch.config import TspConfig
from golden.machine import Machine, MachineError, RunResult


@dataclass
class Expectation:
    result: RunResult | None
    error: str | None
    machine: Machine


def run_model(cfg: TspConfig, program, init: dict, keep_history: bool = False,
              max_cycles: int = 100_000, random_state: int | None = None,
              complement: bool = False, extreme: str | None = None) -> Expectation:
    """Run `program` on the machine model from reset, or with `random_state` (a seed) from
    random bits in every piece of state a program could read without defining it (what
    the RTL's power-up state is: `tb.fuzz.randomise_state`)."""
    m = Machine(cfg, keep_history=keep_history)
    if random_state is not None:
        from tb.fuzz import randomise_state

        randomise_state(m, np.random.default_rng([random_state, 0xD1]), complement, extreme)
    for sl, d in init.items():
        for a, v in d.items():
            m.write_mem(sl, a, v)
    m.load_program(program)
    try:
        return Expectation(m.run(max_cycles=max_cycles), None, m)
    except MachineError as e:
        return Expectation(None, str(e), m)


def undefined_state_models(cfg: TspConfig, program, init: dict, seed: int = 1
                           ) -> list[Machine]:
    """The program run (with history) from random state, from its bitwise complement and
    from every value at the minimum and at the maximum of its range.  A stream byte that
    differs between these and the run from reset depends on state the program never
    defined (e.g. MVM output lanes of weight rows it never loaded); the RTL powers up
    random there, so lock-step does not compare it.  Random draws alone miss bytes by
    chance: the high bytes of a small garbage sum are 0x00 like the reference's; the
    extreme fills make such sums large, of both signs."""
    return [run_model(cfg, program, init, keep_history=True, random_state=seed,
                      complement=c, extreme=e).machine
            for c, e in ((False, None), (True, None), (False, "min"), (False, "max"))]


def lockstep_models(cfg: TspConfig, program, init: dict, seed: int = 1
                    ) -> tuple[Expectation, list[Machine]]:
    """The model runs a lock-step comparison needs: from reset (the reference) and
    `undefined_state_models`."""
    return (run_model(cfg, program, init, keep_history=True),
            undefined_state_models(cfg, program, init, seed))


@dataclass
class ChipScoreboard:
    cfg: TspConfig
    errors: list[str] = field(default_factory=list)
    compared_vectors: int = 0

    def check_clean_status(self, tag: str, st: dict) -> None:
        """The chip finished without a fault (the model accepted the program)."""
        if st["error"] or not st["done"]:
            from hdl.slice import ErrorCode

            code = ErrorCode(st["error_code"]).name if st["error"] else "-"
            self.errors.append(
                f"{tag}: RTL status error={st['error']} done={st['done']} code={code} "
                f"slice={self.cfg.slices[st['error_slice']].name} cycle={st['error_cycle']}; "
                "the model accepts the program")

    def check_counters(self, tag: str, exp: RunResult, got: dict, clock: int | None = None
                       ) -> None:
        """The chip's counters against the model's; `clock` is the testbench's own count
        of the run (clock edges from START to done, `HostDriver.wait_done`)."""
        if got["cycles"] != exp.cycles:
            self.errors.append(f"{tag}: cycles RTL {got['cycles']} != model {exp.cycles}")
        if clock is not None and clock != exp.cycles:
            self.errors.append(f"{tag}: testbench clock count {clock} != model {exp.cycles}")
        for name, v in exp.busy.items():
            if got["busy"][name] != v:
                self.errors.append(f"{tag}: busy[{name}] RTL {got['busy'][name]} != model {v}")
        for name, v in exp.issued.items():
            if got["issued"][name] != v:
                self.errors.append(f"{tag}: issued[{name}] RTL {got['issued'][name]} != "
                                   f"model {v}")
        for name, v in exp.mxm_mvm_cycles.items():
            if name in got["mvm"] and got["mvm"][name] != v:
                self.errors.append(f"{tag}: mvm[{name}] RTL {got['mvm'][name]} != model {v}")

    def check_vector(self, tag: str, slice_name: str, addr: int, exp: np.ndarray,
                     got: np.ndarray) -> None:
        """One SRAM vector read back from the chip against the model's."""
        self.compared_vectors += 1
        if not np.array_equal(exp, got):
            lane = int(np.argmax(exp != got))
            self.errors.append(f"{tag}: SRAM {slice_name}[{addr}] lane {lane}: RTL "
                               f"{got[lane]:#04x}, model {exp[lane]:#04x}")

    def check_sram(self, tag: str, model: Machine, slice_name: str, addr: int,
                   got: np.ndarray) -> None:
        self.check_vector(tag, slice_name, addr, model.read_mem(slice_name, addr), got)
