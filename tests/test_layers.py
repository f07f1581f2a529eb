"""The layers contract of pyproject.toml ([tool.importlinter]): data flows one way.

import-linter builds the import graph of the ``ergo_ray`` of this tree (imports inside
functions included) and fails on any import from a lower layer into a higher one. It runs
in its own process: in this one it would reconfigure logging and silence the package's
loggers for the rest of the session.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_layers_contract_holds(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    code = (
        "import sys, ergo_ray, pathlib\n"
        f"assert pathlib.Path(ergo_ray.__file__).resolve().is_relative_to({str(REPO)!r}), "
        "ergo_ray.__file__\n"
        "from importlinter.cli import lint_imports\n"
        f"sys.exit(lint_imports(config_filename={str(REPO / 'pyproject.toml')!r}, "
        f"cache_dir={str(tmp_path / 'cache')!r}, no_logo=True))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, (
        "an import crosses the layers upwards:\n" + res.stdout[-4000:] + res.stderr[-2000:])
    assert "Contracts: 1 kept, 0 broken" in res.stdout, res.stdout[-2000:]
