"""ergo_ray: galaxy assembly histories from HSC images at survey scale on Ray.

Implements the ERGO-ML method (Eisert et al. 2026): NNCLR contrastive representations of
HSC g, r, i images, and a conditional invertible network that gives posteriors for the
ex-situ stellar fraction and the lookback time and stellar mass of the last major merger.

Importing the package is cheap: Ray, torch and GalSim load only when a stage needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "load_model"]

if TYPE_CHECKING:
    from ergo_ray.infer.bundle import ModelBundle


def load_model(url: str, storage: Any = None) -> ModelBundle:
    """Load a model bundle written by ``ergo-ray train-cinn``.

    Parameters
    ----------
    url : str
        Local path, ``file://`` or ``s3://`` URL of the bundle folder.
    storage : ergo_ray.config.schema.StorageConfig, optional
        Endpoint and credential settings for object storage.

    Returns
    -------
    ergo_ray.infer.bundle.ModelBundle
        Object with ``represent``, ``sample_posterior``, ``summarize`` and the sbi-style
        ``posterior_from_images`` / ``posterior_from_representations`` (``sample``,
        ``log_prob``, ``map``).
    """
    from ergo_ray.infer.bundle import load_bundle

    return load_bundle(url, storage=storage)
