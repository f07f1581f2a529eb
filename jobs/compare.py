r"""Ray job entry point of ``ergo-ray compare``.

The stage: OOD scores, UMAP/KDE between sets, figures.

Submit it from the repository root (the working directory is uploaded to the
cluster, minus what ``.rayignore`` and ``.gitignore`` exclude)::

    ray job submit --working-dir . -- python jobs/compare.py \
        --model s3://BUCKET/models/bundle --out compare/ \
        --set tng100=s3://BUCKET/prepared/tng100 --set hsc=s3://BUCKET/prepared/hsc

It takes the options and configuration files of ``ergo-ray compare`` and runs the
same code. Inside a submitted job Ray sets ``RAY_ADDRESS``, so the stage joins that
cluster; run without ``RAY_ADDRESS`` it starts a local Ray instance.
"""

from __future__ import annotations

import sys

from _entry import main  # takes jobs/ off sys.path and puts the project root there

if __name__ == "__main__":
    sys.exit(main(["compare", *sys.argv[1:]]))
