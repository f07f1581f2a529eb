import pickle

import pytest

from ergo_ray import errors
from ergo_ray.config import load_config, resolved_yaml
from ergo_ray.config.loader import PRESETS
from ergo_ray.errors import ConfigError
from ergo_ray.provenance import redact_argv


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_loads_and_round_trips(preset, tmp_path):
    cfg = load_config(preset)
    assert cfg.preset == preset
    path = tmp_path / "c.yaml"
    path.write_text(resolved_yaml(cfg))
    assert load_config(preset, [path]) == cfg


def test_paper_preset_holds_the_method_values():
    cfg = load_config("paper")
    assert cfg.preprocess.size == 128 and cfg.clr.rep_dim == 256
    assert cfg.clr.temperature == 0.04 and cfg.clr.memory_bank_size == 16384
    assert cfg.cinn.n_blocks == 12 and cfg.cinn.subnet_width == 128 and cfg.cinn.clamp == 1.0
    assert cfg.infer.n_samples == 400 and cfg.ood.k == 8


def test_unknown_key_is_a_one_line_error_naming_it(tmp_path):
    with pytest.raises(ConfigError, match=r"config key 'clr\.lrr': Extra inputs") as exc:
        load_config("local", overrides=["clr.lrr=2"])
    assert "\n" not in str(exc.value)
    f = tmp_path / "bad.yaml"
    f.write_text("cinn:\n  epochs: many\n")
    with pytest.raises(ConfigError, match=r"config key 'cinn\.epochs'.*bad\.yaml"):
        load_config("local", [f])


def test_wrong_type_and_bad_preset_and_cross_field():
    with pytest.raises(ConfigError, match=r"'preprocess\.size'"):
        load_config("local", overrides=["preprocess.size=-3"])
    with pytest.raises(ConfigError, match="unknown preset 'gpu'"):
        load_config("gpu")
    with pytest.raises(ConfigError, match="sum to 1"):
        load_config("local", overrides=["split.train=0.9"])


def test_credentials_are_never_dumped():
    cfg = load_config("local", overrides=["storage.key=AKIAXXXX", "storage.secret=s3cr3t"])
    text = resolved_yaml(cfg)
    assert "s3cr3t" not in text and "AKIAXXXX" not in text
    assert cfg.storage.secret.get_secret_value() == "s3cr3t"
    masked = redact_argv(["--set", "storage.secret=s3cr3t", "s3://user:pw@bucket/x"])
    assert "s3cr3t" not in " ".join(masked) and "pw@" not in " ".join(masked)


def test_redact_argv_known_answers():
    argv = ["mock", "--set=storage.key=AKIA1", "--set", "cinn.epochs=5",
            "--out=s3://u:pw@bucket/x", "--in", "http://me@host/a", "--set", "a.token_id=t"]
    assert redact_argv(argv) == [
        "mock", "--set=storage.key=***", "--set", "cinn.epochs=5",
        "--out=s3://bucket/x", "--in", "http://host/a", "--set", "a.token_id=***"]


@pytest.mark.parametrize("err", [
    errors.ConfigError("bad"), errors.InputError("bad file", "s3://b/x"),
    errors.CatalogSchemaError("missing", "a.csv"), errors.FitsFormatError("no HDU", "f.fits"),
    errors.BadObjectError("no source", "obj-1", "no_source"), errors.StorageError("gone"),
    errors.CheckpointError("tampered"),
])
def test_errors_pickle_with_their_attributes(err):
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err) and str(back) == str(err)
    for attr in ("source", "object_id", "reason"):
        assert getattr(back, attr, None) == getattr(err, attr, None)
