r"""Ray job entry point of ``ergo-ray train-cinn``.

The stage: conditional INN on Ray Train -> model bundle.

Submit it from the repository root (the working directory is uploaded to the
cluster, minus what ``.rayignore`` and ``.gitignore`` exclude)::

    ray job submit --working-dir . -- python jobs/train_cinn.py \
        --preset paper --workers 1 --gpu --data s3://BUCKET/prepared/tng100 \
        --encoder s3://BUCKET/models/nnclr --out s3://BUCKET/models/bundle

It takes the options and configuration files of ``ergo-ray train-cinn`` and runs the
same code. Inside a submitted job Ray sets ``RAY_ADDRESS``, so the stage joins that
cluster; run without ``RAY_ADDRESS`` it starts a local Ray instance.
"""

from __future__ import annotations

import sys

from _entry import main  # takes jobs/ off sys.path and puts the project root there

if __name__ == "__main__":
    sys.exit(main(["train-cinn", *sys.argv[1:]]))
