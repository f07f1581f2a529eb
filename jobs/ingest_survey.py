r"""Ray job entry point of ``ergo-ray ingest-survey``.

The stage: HSC-SSP cutouts + a user catalogue -> catalogue.

Submit it from the repository root (the working directory is uploaded to the
cluster, minus what ``.rayignore`` and ``.gitignore`` exclude)::

    ray job submit --working-dir . -- python jobs/ingest_survey.py \
        --cutouts s3://BUCKET/hsc/cutouts --catalog s3://BUCKET/hsc/catalog.csv \
        --domain hsc --out s3://BUCKET/survey/hsc

It takes the options and configuration files of ``ergo-ray ingest-survey`` and runs the
same code. Inside a submitted job Ray sets ``RAY_ADDRESS``, so the stage joins that
cluster; run without ``RAY_ADDRESS`` it starts a local Ray instance.
"""

from __future__ import annotations

import sys

from _entry import main  # takes jobs/ off sys.path and puts the project root there

if __name__ == "__main__":
    sys.exit(main(["ingest-survey", *sys.argv[1:]]))
