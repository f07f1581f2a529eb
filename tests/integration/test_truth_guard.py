"""The observed survey's truth is for ``validate`` only (issue 17: a guard against tuning to
the test). Between writing it (``mock hsc``) and ``validate hsc``, no stage of the demo -
match, NNCLR, cINN training with its widening fit, catalog, the other validations - reads,
lists or even checks for the ``hsc`` truth table on the loopback S3 server, neither where the
mock wrote it nor the copy that ``prepare hsc`` passes through to its output (``prepare``
copies a separate truth table byte for byte, without parsing it, and is the one stage allowed
to touch it)."""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from ..conftest import S3_LOG

pytestmark = [pytest.mark.ray, pytest.mark.slow]

#: Stages that may touch the truth table before validate: the one that writes it and the one
#: that copies it through unread.
ALLOWED = {"mock hsc", "prepare hsc"}


def _touches_truth(entry: tuple[str, str, str], bucket: str) -> bool:
    kind, _, where = entry
    where = unquote(where)
    return kind == "s3" and where.startswith(f"/{bucket}") and "/hsc/truth" in where


def _by_stage(bucket: str) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """The demo's stages in order, each with the truth-table requests made while it ran."""
    out: list[tuple[str, list[tuple[str, str, str]]]] = []
    for e in S3_LOG:
        if e[0] == "stage":
            out.append((e[1], []))
        elif out and _touches_truth(e, bucket):
            out[-1][1].append(e)
    return out


def test_no_stage_before_validate_reads_the_hsc_truth(ci_demo):
    bucket = ci_demo["root"].removeprefix("s3://").split("/", 1)[0]
    stages = _by_stage(bucket)
    names = [n for n, _ in stages]
    assert {"mock hsc", "prepare hsc", "train-nnclr", "train-cinn", "catalog hsc",
            "validate hsc"} <= set(names), names
    before = stages[: names.index("validate hsc")]
    early = {n: reqs[:3] for n, reqs in before if reqs and n not in ALLOWED}
    assert not early, f"stages before validate hsc touched the hsc truth table: {early}"
    # the recorder does see the truth table when it is read: validate hsc reads it
    reads = stages[names.index("validate hsc")][1]
    assert any(method == "GET" for _, method, _ in reads), reads


def test_the_demo_bundle_carries_a_widening_fitted_on_simba_only(ci_demo):
    import ergo_ray
    from ergo_ray.io import storage

    b = ergo_ray.load_model(storage.join(ci_demo["root"], "model"), ci_demo["storage"])
    assert b.widening is not None and b.widening.targets == ("exsitu_frac",)
    rows = b.widening.fit_info["rows"]
    assert set(rows) <= {"simba", "tng100", "tng50"} and rows.get("simba", 0) > 0
