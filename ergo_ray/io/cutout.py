"""The in-memory raw cutout that every reader returns and every writer takes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: HSC mask planes that make a pixel unusable (BAD, SAT, NO_DATA; formats research §1.5).
BAD_MASK_BITS: tuple[int, ...] = (0, 1, 8)


@dataclass
class Cutout:
    """A raw multi-band cutout in the readers' flux unit.

    Attributes
    ----------
    image : numpy.ndarray
        float32 (3, H, W), bands g, r, i, HSC coadd units on an AB zero point of 27
        (1 nanomaggy = 63.096 units), whatever the source format.
    mask : numpy.ndarray or None
        int32 (3, H, W) HSC mask bit planes.
    variance : numpy.ndarray or None
        float32 (3, H, W) per-pixel variance in image units squared.
    source : str
        URL (or description) the cutout was read from; used in error messages.
    """

    image: np.ndarray
    mask: np.ndarray | None = None
    variance: np.ndarray | None = None
    source: str = ""

    def bad_pixels(self, bits: tuple[int, ...] = BAD_MASK_BITS) -> np.ndarray:
        """Return a bool (3, H, W) array: True where a pixel is masked or not finite.

        Parameters
        ----------
        bits : tuple of int
            Mask bit numbers that make a pixel unusable.

        Returns
        -------
        numpy.ndarray
            Boolean array of the image's shape.
        """
        bad = ~np.isfinite(self.image)
        if self.mask is not None and bits:
            sel = 0
            for b in bits:
                sel |= 1 << b
            mask = np.asarray(self.mask)
            # Test the bits in the mask's own integer type (no int64 copy) when they fit.
            if mask.dtype.kind not in "iu" or sel > np.iinfo(mask.dtype).max:
                mask = mask.astype(np.int64)
            bad |= (mask & mask.dtype.type(sel)) != 0
        return bad
