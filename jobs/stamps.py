r"""Ray job entry point of ``ergo-ray stamps``.

The stage: a PNG grid of example stamps per domain.

Submit it from the repository root (the working directory is uploaded to the
cluster, minus what ``.rayignore`` and ``.gitignore`` exclude)::

    ray job submit --working-dir . -- python jobs/stamps.py \
        --in s3://BUCKET/mock/tng100 --out stamps/

It takes the options and configuration files of ``ergo-ray stamps`` and runs the
same code. Inside a submitted job Ray sets ``RAY_ADDRESS``, so the stage joins that
cluster; run without ``RAY_ADDRESS`` it starts a local Ray instance.
"""

from __future__ import annotations

import sys

from _entry import main  # takes jobs/ off sys.path and puts the project root there

if __name__ == "__main__":
    sys.exit(main(["stamps", *sys.argv[1:]]))
