"""Set-up that Ray runs in every worker process of a local instance.

:func:`ergo_ray.runtime.ensure_ray` names :func:`quiet_ray_internals` as the job's
``worker_process_setup_hook``. Every worker process imports this module before it runs
anything, so it imports nothing but the standard library.
"""

from __future__ import annotations

import logging

#: Ray Train's placement-group cleaner asks the state API every second whether the
#: Train controller is alive. A local instance runs without the dashboard, which serves
#: that API, so each question fails and the cleaner prints a warning to the driver's
#: console every second of every training run. Without that API the cleaner cannot act
#: anyway; a local instance's placement groups go when its driver exits.
NOISY_LOGGERS = ("ray.train.v2._internal.execution.controller.placement_group_cleaner",)


def quiet_ray_internals() -> None:
    """Raise Ray's internal loggers in :data:`NOISY_LOGGERS` to ``ERROR``."""
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
