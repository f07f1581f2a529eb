"""The observed survey's truth is for ``validate`` only (issue 17: a guard against tuning to
the test): between writing it (``mock hsc``) and ``validate hsc``, no stage of the demo -
prepare, match, NNCLR, cINN training with its widening fit, catalog, the other validations -
reads, lists or even checks for the ``hsc`` truth table on the loopback S3 server."""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from ..conftest import S3_LOG

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _touches_truth(entry: tuple[str, str, str], bucket: str) -> bool:
    kind, _, where = entry
    where = unquote(where)
    return kind == "s3" and where.startswith(f"/{bucket}") and "mock/hsc/truth" in where


def test_no_stage_before_validate_reads_the_hsc_truth(ci_demo):
    bucket = ci_demo["root"].removeprefix("s3://").split("/", 1)[0]
    stages = [i for i, e in enumerate(S3_LOG) if e[0] == "stage"]
    names = [S3_LOG[i][1] for i in stages]
    assert "mock hsc" in names and "validate hsc" in names, names
    start = stages[names.index("mock hsc") + 1]  # the stage after the one that writes it
    end = stages[names.index("validate hsc")]
    between = [S3_LOG[i][1] for i in stages if start <= i < end]
    assert {"prepare hsc", "train-nnclr", "train-cinn", "catalog hsc"} <= set(between)
    early = [e for e in S3_LOG[start:end] if _touches_truth(e, bucket)]
    assert not early, f"stages {between} touched the hsc truth table: {early[:5]}"
    # the recorder sees the truth table when it is read: validate hsc does read it
    stop = stages[names.index("validate hsc") + 1] if names[-1] != "validate hsc" else None
    assert any(_touches_truth(e, bucket) and e[1] == "GET" for e in S3_LOG[end:stop])
