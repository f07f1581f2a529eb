"""The catalogue's model actor on CUDA, alone and in ``run_catalog`` with a GPU per actor,
against the CPU: the same posteriors within what float16 autocast of the encoder moves."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.gpu.conftest import GPU, REP_RTOL, row_relative_error

pytestmark = [*GPU, pytest.mark.ray]

SAMPLES = 100
#: Summaries from float16 representations against float32 CPU ones (physical units). A
#: float16 CPU autocast of the test bundle's encoder moves them by at most 2.4e-5.
SUMMARY_TOL = {"rtol": 1e-3, "atol": 1e-3}


def _cpu_reference(
    url: str,
    images: np.ndarray,
    ids: list[str],
    seed: int,
    observables: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    from ergo_ray.infer.bundle import load_bundle
    from ergo_ray.models.cinn import object_seeds

    b = load_bundle(url, device="cpu")
    reps = b.represent(images)
    out = b.summarize(
        b.sample_posterior(
            reps, SAMPLES, seeds=object_seeds(ids, seed), observables=observables
        )
    )
    out["representation"] = reps
    return out


def test_posterior_predictor_on_cuda_matches_the_cpu(trained_bundle, galaxies):
    from ergo_ray.infer.bundle import load_bundle
    from ergo_ray.infer.predictors import PosteriorPredictor

    imgs, ids, obs = galaxies["images"], galaxies["ids"], galaxies["observables"]
    ref = _cpu_reference(trained_bundle, imgs, ids, 5, obs)
    pred = PosteriorPredictor(trained_bundle, None, SAMPLES, seed=5)  # default: CUDA
    assert pred.bundle.device.type == "cuda" and pred.mixed_precision
    summ, ood, reps, errors = pred.infer(imgs, ids, obs)
    assert errors == [None] * len(ids)
    assert row_relative_error(reps, ref["representation"]).max() < REP_RTOL
    for col, got in summ.items():
        np.testing.assert_allclose(
            got, ref[col], equal_nan=True, err_msg=col, **SUMMARY_TOL
        )
    # the OOD score of the actor's own representations, computed on the CPU
    cpu = load_bundle(trained_bundle, device="cpu")
    np.testing.assert_allclose(ood, cpu.ood_score(reps), rtol=1e-4)

    # autocast is what `mixed_precision` switches: without it the encoder runs in float32
    full = PosteriorPredictor(
        trained_bundle, None, SAMPLES, seed=5, mixed_precision=False
    )
    reps32 = full.infer(imgs, ids, obs)[2]
    assert not np.array_equal(reps32, reps)
    assert row_relative_error(reps32, ref["representation"]).max() < REP_RTOL

    # an object without a redshift is an error row on CUDA too, the others are unchanged
    obs_gap = {
        **obs,
        "redshift": np.where(np.arange(len(ids)) == 3, np.nan, obs["redshift"]),
    }
    summ_gap, _, _, errors_gap = pred.infer(imgs, ids, obs_gap)
    assert errors_gap[3] == (
        f"{ids[3]}: no redshift in the input catalogue (the model is "
        "conditioned on redshift, i_mag)"
    )
    assert errors_gap[:3] + errors_gap[4:] == [None] * (len(ids) - 1)
    np.testing.assert_array_equal(
        np.delete(summ_gap["exsitu_frac_mean"], 3),
        np.delete(summ["exsitu_frac_mean"], 3),
    )


def test_catalog_with_a_gpu_per_actor_matches_a_cpu_run(
    ray_session, trained_bundle, tmp_path
):
    import pyarrow.parquet as pq

    from ergo_ray.config.loader import load_config
    from ergo_ray.infer.pipeline import CatalogOptions, run_catalog
    from ergo_ray.io.schemas import posterior_summary_columns
    from tests.integration.test_catalog import (
        read_parts,
        shard_column,
        write_prepared_shards,
    )

    assert ray_session.cluster_resources().get("GPU", 0) >= 1
    size = load_config("ci").preprocess.size
    ids = write_prepared_shards(
        tmp_path / "prep", n_units=3, rows=12, size=size, seed=4
    )
    runs = {}
    for name, gpus in (("gpu", 1.0), ("cpu", 0.0)):
        out = tmp_path / name
        opts = CatalogOptions(
            model=trained_bundle,
            input=str(tmp_path / "prep"),
            out=str(out),
            n_samples=SAMPLES,
            seed=6,
            gpus_per_actor=gpus,
            cpus_per_actor=1.0,
            batch_size=8,
            keep_representation=True,
        )
        res = run_catalog(opts)
        assert res.rows == len(ids) and res.errors == 0, res.first_error
        started = json.loads((out / "_meta" / "actors.json").read_text())[
            "started_actors"
        ]
        # the actor's device follows its reservation (Ray leaves GPUs visible to others)
        assert started and {a["device"] for a in started} == {"cuda" if gpus else "cpu"}
        runs[name] = read_parts(str(out)).to_pandas().set_index("object_id").loc[ids]

    gpu, cpu = runs["gpu"], runs["cpu"]
    assert (gpu["status"] == "ok").all() and (cpu["status"] == "ok").all()
    reps_gpu = np.stack(gpu["representation"].to_numpy())
    reps_cpu = np.stack(cpu["representation"].to_numpy())
    assert row_relative_error(reps_gpu, reps_cpu).max() < REP_RTOL
    for col in posterior_summary_columns():
        np.testing.assert_allclose(
            gpu[col].to_numpy(),
            cpu[col].to_numpy(),
            equal_nan=True,
            err_msg=col,
            **SUMMARY_TOL,
        )
    # and the CPU run is the public API's answer on the CPU
    paths = sorted((tmp_path / "prep" / "shards").glob("*.parquet"))
    obs = {c: shard_column(paths, c) for c in ("redshift", "i_mag")}
    images = shard_column(paths, "image").reshape(-1, 3, size, size)
    ref = _cpu_reference(trained_bundle, images, ids, 6, obs)
    for col in posterior_summary_columns():
        np.testing.assert_allclose(
            cpu[col].to_numpy(),
            ref[col],
            rtol=1e-4,
            atol=1e-5,
            equal_nan=True,
            err_msg=col,
        )
    assert pq.read_schema(next((tmp_path / "gpu" / "parts").glob("*.parquet"))).metadata
