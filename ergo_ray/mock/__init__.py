"""The built-in mock universe: HSC-like g, r, i stamps of galaxies with known assembly history.

Public API
----------
``mock_object(domain, seed, index, projection, stamp_px, mass_mode="balanced")``
    One rendered projection: ``(row, Cutout)``.
``draw_galaxy(domain, seed, index, mass_mode="balanced")``
    The population model only (no pixels); ``.row(projection)`` gives the catalogue row.

See ``docs`` mock-universe.md for the design and :mod:`ergo_ray.mock.population` for the
relations, the domain shifts and the oracle figures.
"""

from __future__ import annotations

from ergo_ray.mock.population import DOMAIN_SHIFTS, Galaxy, draw_galaxy
from ergo_ray.mock.render import mock_object, render_view

__all__ = ["DOMAIN_SHIFTS", "Galaxy", "draw_galaxy", "mock_object", "render_view"]
