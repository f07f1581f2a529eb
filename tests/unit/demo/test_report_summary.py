"""The demo's headline coverage figures quote exactly the 68 % and 90 % intervals."""

from __future__ import annotations

import math

from ergo_ray.demo.report import _coverage_at
from ergo_ray.evaluate.calibration import COVERAGE_LEVELS


def test_headline_levels_are_on_the_validation_curve():
    assert len(COVERAGE_LEVELS) == 10 and {0.68, 0.9} <= set(COVERAGE_LEVELS)
    curve = {"levels": list(COVERAGE_LEVELS), "coverage": [v / 100 for v in range(10)]}
    assert _coverage_at(curve, 0.68) == curve["coverage"][COVERAGE_LEVELS.index(0.68)]
    assert _coverage_at(curve, 0.9) == curve["coverage"][COVERAGE_LEVELS.index(0.9)]


def test_a_curve_without_the_level_gives_nan_not_a_neighbour():
    old = {"levels": [0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85, 0.95],
           "coverage": [0.1] * 10}
    assert math.isnan(_coverage_at(old, 0.68)) and math.isnan(_coverage_at(old, 0.9))
