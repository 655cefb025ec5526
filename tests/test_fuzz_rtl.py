"""Differential fuzzing on the Verilated chip (sim/fuzz.py): a bounded run of random
whole-ISA programs, each compared with the machine model (final SRAM, counters, error
status), in batches with different X seeds (random power-up state); and the failure
path end to end with a negative control (a case whose image the chip gets corrupted):
it is reported, saved as a reproducer, replays as a failure, and shrinks."""

import json

import pytest

from arch.config import get_config
from sim import fuzz as fz
from tb.fuzz import Case

pytestmark = pytest.mark.rtl

#: 1, 2, 3 and 4 superlanes
N_PROGRAMS = {"tiny": 16, "small": 32, "tiny3": 8, "medium": 8}


@pytest.mark.parametrize("config", list(N_PROGRAMS))
def test_bounded_fuzz(config, base_seed):
    n = N_PROGRAMS[config]
    rep = fz.fuzz(get_config(config), n, base_seed, batch=n // 2, jobs=1, do_shrink=False)
    print(rep.text())
    assert rep.programs == n and len(rep.x_seeds) == 2 and rep.x_seeds[0] != rep.x_seeds[1]
    assert not rep.failures, rep.text()
    assert rep.sram_vectors_compared > 10 * n and rep.instructions > 50 * n


def test_failure_is_saved_replayed_and_shrunk(base_seed, monkeypatch, tmp_path):
    monkeypatch.setattr(fz, "fuzz_dir", lambda: tmp_path)
    cfg = get_config("tiny")
    rep = fz.fuzz(cfg, 3, base_seed, kinds=["MEM", "VXM"], batch=3, jobs=1, corrupt=(1,),
                  max_shrink_runs=4)
    print(rep.text())
    assert [f["index"] for f in rep.failures] == [1], "exactly the corrupted case must fail"
    f = rep.failures[0]
    assert f["errors"] and f["dir"].startswith(str(tmp_path))
    assert f["replay"].startswith("make fuzz-replay CASE=")
    meta = json.loads((tmp_path / f["name"] / "case.json").read_text())
    assert meta["x_seed"] == f["x_seed"] and meta["failure"] == f["errors"]
    # one command replays it, and it still fails
    assert not fz.replay(tmp_path / f["name"])["ok"]
    # the shrunk reproducer is smaller and still fails
    orig = Case.load(tmp_path / f["name"])
    small = Case.load(tmp_path / f["name"] / "min")
    print(f"shrunk {orig.n_slice_instructions} -> {small.n_slice_instructions}")
    assert small.n_slice_instructions < orig.n_slice_instructions
    assert not fz.replay(tmp_path / f["name"] / "min")["ok"]


@pytest.mark.parametrize("config", list(N_PROGRAMS))
def test_directed_programs_on_rtl(config, tmp_path):
    """The directed programs of tb/directed.py on the chip, compared like fuzz cases."""
    from tb.directed import directed_cases

    cfg = get_config(config)
    specs = [{"dir": str(c.save(tmp_path / c.name))} for c in directed_cases(cfg)]
    s = fz.run_batch(cfg, specs, name=f"directed-{config}", x_seed=len(specs))
    for r in s["cases"]:
        print(f"{r['name']}: {'ok' if r['ok'] else r['errors']}")
    assert all(r["ok"] for r in s["cases"]) and len(s["cases"]) == len(specs)
    assert s["sram_vectors_compared"] >= len(specs)
