r"""Ray job entry point of ``ergo-ray prepare``.

The stage: raw cutouts -> preprocessed shards.

Submit it from the repository root (the working directory is uploaded to the
cluster, minus what ``.rayignore`` and ``.gitignore`` exclude)::

    ray job submit --working-dir . -- python jobs/prepare.py \
        --in s3://BUCKET/mock/tng100 --out s3://BUCKET/prepared/tng100

It takes the options and configuration files of ``ergo-ray prepare`` and runs the
same code. Inside a submitted job Ray sets ``RAY_ADDRESS``, so the stage joins that
cluster; run without ``RAY_ADDRESS`` it starts a local Ray instance.
"""

from __future__ import annotations

import sys
from pathlib import Path

_JOBS = Path(__file__).resolve().parent
_ROOT = _JOBS.parent
# ``python jobs/x.py`` puts jobs/ first on sys.path, where mock.py, match.py, ...
# would shadow other top-level modules. The project root (the job's working
# directory) goes there instead, so that ``ergo_ray`` imports from that tree.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _JOBS]
if (_ROOT / "ergo_ray").is_dir() and str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from ergo_ray.cli.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["prepare", *sys.argv[1:]]))
