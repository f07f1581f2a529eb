"""Validation against truth and comparison between domains (method.md §5–§8).

* :mod:`~ergo_ray.evaluate.metrics`: the paper's accuracy metrics, per-mass-bin errors and
  the no-major-merger classification;
* :mod:`~ergo_ray.evaluate.calibration`: coverage curves, PIT histograms, latent normality;
* :mod:`~ergo_ray.evaluate.ood`: the k-NN distance-ratio OOD score between sets;
* :mod:`~ergo_ray.evaluate.plots`, :mod:`~ergo_ray.evaluate.compare_plots`,
  :mod:`~ergo_ray.evaluate.science`: figures;
* :mod:`~ergo_ray.evaluate.report`: the self-contained HTML report and file output;
* :mod:`~ergo_ray.evaluate.inputs`: reading the sets to evaluate;
* :mod:`~ergo_ray.evaluate.set_posterior`: a set's posterior through the bundle's
  :class:`~ergo_ray.infer.posterior.Posterior`;
* :mod:`~ergo_ray.evaluate.validation`, :mod:`~ergo_ray.evaluate.validation_output`: the
  ``validate`` stage's scores and outputs; :mod:`~ergo_ray.evaluate.comparison`: ``compare``;
* :mod:`~ergo_ray.evaluate.widening_fit`: the shift-aware widening fitted after training.
"""

from __future__ import annotations

from ergo_ray.evaluate.calibration import (
    calibration_metrics,
    coverage_curve,
    latent_normality,
    pit_histogram,
    pit_values,
)
from ergo_ray.evaluate.metrics import (
    evaluate_predictions,
    mass_bin_metrics,
    nmm_classification,
    target_metrics,
    truth_from_columns,
)
from ergo_ray.evaluate.ood import OodResult, ood_scores, pair_ranking

__all__ = [
    "OodResult",
    "calibration_metrics",
    "coverage_curve",
    "evaluate_predictions",
    "latent_normality",
    "mass_bin_metrics",
    "nmm_classification",
    "ood_scores",
    "pair_ranking",
    "pit_histogram",
    "pit_values",
    "target_metrics",
    "truth_from_columns",
]
