"""Image preprocessing: Petrosian radii, crop, resize, stretch; splits; augmentations.

The public entry point is :func:`prepare_image` (one raw cutout → uint8 (3, S, S) in
channel order (i, r, g)). Augmentations (:mod:`ergo_ray.preprocess.augment`) need torch and
are imported from their module.
"""

from __future__ import annotations

from ergo_ray.preprocess.pipeline import RADIUS_KEYS, prepare_image

__all__ = ["RADIUS_KEYS", "prepare_image"]
