"""The README's Python API example runs, against a small real bundle, and does what it says."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from tests.unit.infer.test_bundle import _write, raw_cutouts

README = Path(__file__).resolve().parents[2] / "README.md"
MARKER = "<!-- tested: tests/unit/test_readme_example.py -->"


def readme_example() -> str:
    """Return the Python block that follows the marker in README.md."""
    text = README.read_text()
    assert text.count(MARKER) == 1, "the README must mark exactly one tested example"
    m = re.match(r"\s*```python\n(.*?)\n```", text[text.index(MARKER) + len(MARKER):], re.S)
    assert m, "the marker must stand directly above a ```python block"
    return m.group(1)


@pytest.fixture(scope="module")
def model_url(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("readme")
    url = str(tmp / "model")
    _write(url, tmp, baseline=False, observables=("redshift", "i_mag"))
    return url


def test_the_readme_api_example_runs(model_url):
    n = 4
    images = raw_cutouts(n, seed=11)
    images[1] = np.nan                                  # a galaxy that cannot be prepared
    ns = {"model_url": model_url, "images": images, "ids": [f"g-{i}" for i in range(n)],
          "z": np.array([0.1, 0.2, 0.3, 0.25]), "mag": np.array([17.0, 18.5, 19.0, 16.2])}
    code = readme_example()
    for name in ("load_model(", ".sample(", ".log_prob(", ".map(", "posterior_from_images(",
                 "posterior_from_representations("):
        assert name in code, f"the README example no longer shows {name}"
    exec(compile(code, str(README), "exec"), ns)

    good = np.arange(n) != 1
    assert list(ns["bad"]) == ["g-1"] and ns["bad"]["g-1"].startswith("all_masked")
    theta, log_p, best = ns["theta"], ns["log_p"], ns["best"]
    assert theta.shape == (n, 400, 3) and log_p.shape == (n, 400) and best.shape == (n, 3)
    assert np.isnan(theta[1]).all() and np.isnan(log_p[1]).all() and np.isnan(best[1]).all()
    assert np.isfinite(theta[good]).all() and np.isfinite(best[good]).all()
    assert np.isfinite(log_p[good]).mean() > 0.99    # NaN only outside the logit's support
    # the MAP lies within each good galaxy's samples
    assert np.all(best[good, 0] >= theta[good, :, 0].min(1) - 1e-6)
    assert np.all(best[good, 0] <= theta[good, :, 0].max(1) + 1e-6)
    # from the representations, the same galaxies get the same posterior (seeded by id)
    summary = ns["summary"]
    np.testing.assert_allclose(summary["exsitu_frac_map"], best[good, 0], rtol=1e-6)
