"""Profile-guided builds (`sim.pgo`): the switch, which builds it applies to, the build
key, and the two-pass mechanism on a small C++ program built the way Verilator's makefile
builds a model (OPT_FAST for the evaluation code, the runtime library apart)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from test_build_cache import artifact

from arch.config import get_config
from sim import build, pgo, toolchain


def test_switch_is_checked(monkeypatch):
    monkeypatch.delenv("TSP_PGO", raising=False)
    assert toolchain.pgo() is False
    monkeypatch.setenv("TSP_PGO", "1")
    assert toolchain.pgo() is True
    monkeypatch.setenv("TSP_PGO", "yes")
    with pytest.raises(toolchain.ToolchainError, match=r"TSP_PGO='yes'.*1.*0"):
        toolchain.pgo()


def test_only_the_chips_speed_builds_are_profile_guided(monkeypatch):
    monkeypatch.setenv("TSP_PGO", "1")
    assert pgo.enabled("chip")
    assert not pgo.enabled("fabric")
    assert not pgo.enabled("chip", waves=True)
    assert not pgo.enabled("chip", coverage=True)
    monkeypatch.setenv("TSP_PGO", "0")
    assert not pgo.enabled("chip")


def test_training_set_keys_the_build(tmp_path, monkeypatch):
    """A profile-guided build never shares a directory with a plain one, nor with one
    trained on other programs or with other flags."""
    cfg = get_config("tiny")
    flags = build.verilator_flags()
    plain = build.build_key(artifact(tmp_path / "a"), flags)
    key = pgo.training_key(cfg)
    assert key == pgo.training_key(cfg)  # the training set is reproducible
    guided = build.build_key(artifact(tmp_path / "b"), flags, key)
    assert guided != plain
    monkeypatch.setattr(pgo, "TRAINING_SEED", pgo.TRAINING_SEED + 1)
    assert pgo.training_key(cfg) != key
    monkeypatch.setattr(pgo, "TRAINING_SEED", pgo.TRAINING_SEED - 1)
    monkeypatch.setenv("TSP_CXX_OPT", "-O3")  # the passes' flags are in the key
    assert pgo.training_key(cfg) != key


MAKEFILE = """\
# the shape of Verilator's makefile: OPT_FAST for the model, the runtime on its own flags
OPT_FAST ?= -O2
LDFLAGS ?=
prog: model.o verilated.o
\t$(CXX) $(LDFLAGS) $^ -o $@
model.o: model.cpp
\t$(CXX) $(OPT_FAST) -c $< -o $@
verilated.o: verilated.cpp
\t$(CXX) -O1 -c $< -o $@
"""

MODEL = """\
#include <cstdio>
#include <cstdlib>
int runtime_twice(int);
int main(int argc, char **argv) {
    long s = 0;
    int n = atoi(argv[1]);
    for (int i = 0; i < n; i++) s += (i % 7 == 0) ? runtime_twice(i) : i;
    printf("%ld\\n", s);
    return 0;
}
"""


def _project(d: Path) -> list[str]:
    d.mkdir()
    (d / "Makefile").write_text(MAKEFILE)
    (d / "model.cpp").write_text(MODEL)
    (d / "verilated.cpp").write_text("int runtime_twice(int x) { return 2 * x; }\n")
    return ["make", "-C", str(d)]


def test_two_passes_rebuild_the_model_with_its_profile(tmp_path):
    toolchain.require_cxx()
    d = tmp_path / "model"
    make = _project(d)
    subprocess.run([*make, *pgo.instrument_vars()], check=True)
    runtime = (d / "verilated.o").stat().st_mtime_ns
    want = sum(2 * i if i % 7 == 0 else i for i in range(1000))

    def train():
        out = subprocess.run([str(d / "prog"), "1000"], capture_output=True, text=True,
                             check=True).stdout
        assert int(out) == want

    profiles = pgo.rebuild_with_profile(d, make, train, tmp_path / "build.log",
                                        toolchain.setup_environ(dict(os.environ)))
    assert profiles == 1  # model.o's (the runtime is not instrumented)
    assert (d / "model.gcda").exists()
    assert (d / "verilated.o").stat().st_mtime_ns == runtime  # kept, not recompiled
    log = (tmp_path / "build.log").read_text()
    assert "-fprofile-use" in log and "-fprofile-generate" not in log.split("profile-guided")[1]
    # the final program has no instrumentation: running it writes no profile
    (d / "model.gcda").unlink()
    out = subprocess.run([str(d / "prog"), "1000"], capture_output=True, text=True, check=True)
    assert int(out.stdout) == want and not (d / "model.gcda").exists()


def test_training_that_writes_no_profile_is_an_error(tmp_path):
    toolchain.require_cxx()
    d = tmp_path / "model"
    make = _project(d)
    subprocess.run(make, check=True)  # built without instrumentation
    with pytest.raises(toolchain.ToolchainError, match=r"training run wrote no profile"):
        pgo.rebuild_with_profile(d, make, lambda: None, tmp_path / "build.log",
                                 toolchain.setup_environ(dict(os.environ)))
    # the half-made build is discarded, so that the next attempt makes both passes afresh
    assert not list(d.glob("*.o")) and not (d / "prog").exists()
    assert (d / "model.cpp").exists()
