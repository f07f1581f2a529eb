"""The shared start of every ``jobs/<stage>.py`` script.

``python jobs/x.py`` puts ``jobs/`` first on ``sys.path``, where ``mock.py``, ``match.py``, ...
would shadow other top-level modules. Importing this module takes ``jobs/`` off the path and
puts the project root (the job's working directory) there instead, so that ``ergo_ray``
imports from that tree; it then hands over :func:`ergo_ray.cli.main.main`.
"""

from __future__ import annotations

import sys
from pathlib import Path

_JOBS = Path(__file__).resolve().parent
_ROOT = _JOBS.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _JOBS]
if (_ROOT / "ergo_ray").is_dir() and str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from ergo_ray.cli.main import main  # noqa: E402

__all__ = ["main"]
