"""Shared type aliases."""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

Batch = dict[str, np.ndarray]
FloatArray = npt.NDArray[np.float32]

#: Bands of a raw cutout, in array order.
RAW_BANDS: tuple[str, str, str] = ("g", "r", "i")
#: Channel order of a prepared image (method.md §2.4: I, R, G → RGB).
PREPARED_CHANNELS: tuple[str, str, str] = ("i", "r", "g")
#: The five domains of the mock universe.
DOMAINS: tuple[str, ...] = ("tng100", "tng50", "eagle", "simba", "hsc")
#: Posterior targets, in the order of the cINN's output dimensions.
TARGETS: tuple[str, str, str] = ("exsitu_frac", "lmm_lookback_gyr", "lmm_log_mass")
#: A catalogue column the cINN can take beside the representation (``cinn.observables``).
#: ``log_r50_kpc``, ``log_r90_kpc`` and ``concentration`` are derived from the Petrosian
#: radii that ``prepare`` measures (:mod:`ergo_ray.models.observables`).
CinnObservable = Literal["redshift", "i_mag", "log_r50_kpc", "log_r90_kpc", "concentration"]
CINN_OBSERVABLES: tuple[CinnObservable, ...] = get_args(CinnObservable)
#: A stretch of the prepared stamps (``preprocess.stretch``; :mod:`ergo_ray.preprocess.stretch`).
Stretch = Literal["log", "log_joint", "asinh"]
#: HSC pixel scale in arcsec.
PIXEL_SCALE_ARCSEC = 0.168
#: Mean HSC PDR3 Wide PSF FWHM per band in arcsec (formats research §1.6).
PSF_FWHM_ARCSEC: dict[str, float] = {"g": 0.79, "r": 0.75, "i": 0.61}
#: AB zero point of the readers' flux unit (HSC coadd convention).
ZERO_POINT = 27.0
#: HSC flux units per nanomaggy (10**(0.4 * (27 - 22.5))).
UNITS_PER_NANOMAGGY = 10 ** (0.4 * (ZERO_POINT - 22.5))
