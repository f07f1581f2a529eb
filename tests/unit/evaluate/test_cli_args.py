from __future__ import annotations

import pytest

from ergo_ray.cli import compare, validate
from ergo_ray.cli.main import build_parser
from ergo_ray.errors import ConfigError


def _parse(stage, module, argv):
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[stage]
    module.add_arguments(sub)
    return parser.parse_args([stage, *argv])


def test_compare_set_routes_names_and_config_overrides():
    args = _parse("compare", compare, [
        "--model", "m", "--out", "o", "--set", "tng100=s3://b/p/tng100",
        "--set", "storage.endpoint_url=http://127.0.0.1:5000", "--set", "hsc=/data/hsc",
        "--set", "seed=3", "--observed", "hsc"])
    assert args.sets == ["tng100=s3://b/p/tng100", "hsc=/data/hsc"]
    assert args.overrides == ["storage.endpoint_url=http://127.0.0.1:5000", "seed=3"]
    assert compare.parse_sets(args.sets) == {"tng100": "s3://b/p/tng100", "hsc": "/data/hsc"}


def test_parse_sets_errors():
    with pytest.raises(ConfigError, match="at least two"):
        compare.parse_sets(["a=/x"])
    with pytest.raises(ConfigError, match="given twice"):
        compare.parse_sets(["a=/x", "a=/y"])
    with pytest.raises(ConfigError, match="expected NAME=URL"):
        compare.parse_sets(["a=/x", "b c=/y"])
    with pytest.raises(ConfigError, match="expected NAME=URL"):
        compare.parse_sets(["a=/x", "b="])


def test_validate_options():
    args = _parse("validate", validate, ["--model", "m", "--in", "a", "b", "--out", "o",
                                         "--truth", "t", "--split", "all", "--samples", "20"])
    assert args.inputs == ["a", "b"] and args.truth == "t" and args.split == "all"
    assert args.samples == 20 and args.limit is None
    assert _parse("validate", validate, ["--model", "m", "--in", "a", "--out", "o"]).split == "test"
