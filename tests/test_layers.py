"""The layers contract of pyproject.toml ([tool.importlinter]): data flows one way.

import-linter builds the import graph of the ``ergo_ray`` found on ``sys.path`` (imports
inside functions included) and fails on any import from a lower layer into a higher one.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_layers_contract_holds(tmp_path, monkeypatch):
    pytest.importorskip("importlinter")
    from importlinter.cli import lint_imports

    monkeypatch.syspath_prepend(str(REPO))
    ergo = importlib.import_module("ergo_ray")
    # the contract must judge this tree, not another installed copy
    assert Path(ergo.__file__).resolve().is_relative_to(REPO / "ergo_ray"), ergo.__file__
    assert str(REPO) in sys.path
    status = lint_imports(config_filename=str(REPO / "pyproject.toml"),
                          cache_dir=str(tmp_path / "cache"), no_logo=True)
    assert status == 0, "an import crosses the layers upwards; see the report above"
