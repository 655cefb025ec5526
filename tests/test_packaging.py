"""Package metadata: the current (PEP 639) form, so `pip install` prints no setuptools
deprecation warnings about the licence table."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.licenses import canonicalize_license_expression
from packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_license_is_an_spdx_expression():
    meta = tomllib.loads(PYPROJECT.read_text())["project"]
    lic = meta["license"]
    assert isinstance(lic, str), f"license = {lic!r}: the table form is deprecated"
    assert canonicalize_license_expression(lic) == lic
    # with a licence expression, setuptools refuses licence classifiers
    assert not [c for c in meta.get("classifiers", []) if c.startswith("License ::")]


def test_build_backend_understands_license_expressions():
    build = tomllib.loads(PYPROJECT.read_text())["build-system"]
    reqs = {Requirement(r).name: Requirement(r) for r in build["requires"]}
    spec = reqs["setuptools"].specifier
    # setuptools 77 is the first that reads `license = "<SPDX>"`
    assert not spec.contains("76.1.0") and spec.contains("77.0.0")
