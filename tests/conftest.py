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


def pytest_report_header(config):
    return f"tsp: base seed {config.getoption('--seed')} (rerun with --seed N or TSP_SEED=N)"


@pytest.fixture
def base_seed(request) -> int:
    return request.config.getoption("--seed")
