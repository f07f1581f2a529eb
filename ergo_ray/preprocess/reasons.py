"""Named reasons for which one galaxy cannot be preprocessed.

Every :class:`~ergo_ray.errors.BadObjectError` raised by :mod:`ergo_ray.preprocess` carries
one of these codes in ``reason``; ``ergo-ray prepare`` writes it to the errors table.
"""

from __future__ import annotations

#: The stamp is not a finite float array of shape (3, H, W) with H, W >= 8.
BAD_SHAPE = "bad_shape"
#: Every r-band pixel is masked or not finite.
ALL_MASKED = "all_masked"
#: No source above the detection threshold near the stamp centre.
NO_SOURCE = "no_source"
#: The Petrosian ratio never falls below eta inside the stamp.
NO_PETROSIAN_RADIUS = "no_petrosian_radius"
#: The flux inside 2 x r_petro is not positive.
NONPOSITIVE_FLUX = "nonpositive_flux"
#: R50 could not be measured.
R50_NOT_FINITE = "r50_not_finite"
#: R90 could not be measured.
R90_NOT_FINITE = "r90_not_finite"
#: One band of the crop has no positive pixel, so the log stretch is undefined.
EMPTY_BAND = "empty_band"
#: The stretch's upper limit is not above its lower limit in one band.
FLAT_STRETCH = "flat_stretch"

ALL_REASONS: tuple[str, ...] = (
    BAD_SHAPE,
    ALL_MASKED,
    NO_SOURCE,
    NO_PETROSIAN_RADIUS,
    NONPOSITIVE_FLUX,
    R50_NOT_FINITE,
    R90_NOT_FINITE,
    EMPTY_BAND,
    FLAT_STRETCH,
)
