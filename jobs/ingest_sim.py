r"""Ray job entry point of ``ergo-ray ingest-sim``.

The stage: TNG-format mocks + merger catalogues -> catalogue.

Submit it from the repository root (the working directory is uploaded to the
cluster, minus what ``.rayignore`` and ``.gitignore`` exclude)::

    ray job submit --working-dir . -- python jobs/ingest_sim.py \
        --images s3://BUCKET/tng/images --assembly s3://BUCKET/tng/assembly.hdf5 \
        --mergers s3://BUCKET/tng/mergers.hdf5 --domain tng100 \
        --out s3://BUCKET/sim/tng100

It takes the options and configuration files of ``ergo-ray ingest-sim`` and runs the
same code. Inside a submitted job Ray sets ``RAY_ADDRESS``, so the stage joins that
cluster; run without ``RAY_ADDRESS`` it starts a local Ray instance.
"""

from __future__ import annotations

import sys

from _entry import main  # takes jobs/ off sys.path and puts the project root there

if __name__ == "__main__":
    sys.exit(main(["ingest-sim", *sys.argv[1:]]))
