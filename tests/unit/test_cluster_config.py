"""cluster.yaml, the KubeRay RayJob, the job scripts and the job upload (no Ray)."""

from __future__ import annotations

import copy
import importlib.util
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CLUSTER_YAML = REPO / "cluster.yaml"
RAYJOB_YAML = REPO / "jobs" / "kuberay-rayjob.yaml"

#: vCPUs and GPUs of the AWS instance types cluster.yaml may use (AWS specs).
INSTANCE_TYPES: dict[str, tuple[int, int]] = {
    "g6.xlarge": (4, 1), "g6.2xlarge": (8, 1), "g6.4xlarge": (16, 1),
    "g6.8xlarge": (32, 1), "g6.12xlarge": (48, 4), "g6.48xlarge": (192, 8),
    "g6e.xlarge": (4, 1), "g6e.2xlarge": (8, 1), "g6e.4xlarge": (16, 1),
    "g6e.12xlarge": (48, 4),
    "g5.xlarge": (4, 1), "g5.2xlarge": (8, 1), "g5.4xlarge": (16, 1),
    "g5.12xlarge": (48, 4),
    "p4d.24xlarge": (96, 8), "p5.48xlarge": (192, 8),
    "c7i.2xlarge": (8, 0), "c7i.4xlarge": (16, 0), "c7i.8xlarge": (32, 0),
    "m7i.xlarge": (4, 0), "m7i.2xlarge": (8, 0), "m7i.4xlarge": (16, 0),
}


@pytest.fixture(scope="module")
def cluster() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


@pytest.fixture(scope="module")
def paper():
    from ergo_ray.config.loader import load_config

    return load_config("paper", [], [])


def _workers(cluster: dict) -> dict[str, dict]:
    return {name: nt for name, nt in cluster["available_node_types"].items()
            if name != cluster["head_node_type"]}


def _gpu_workers(cluster: dict) -> dict[str, dict]:
    return {n: nt for n, nt in _workers(cluster).items()
            if nt["resources"].get("GPU", 0) > 0}


# --- cluster.yaml ------------------------------------------------------------

def test_cluster_yaml_passes_rays_own_validation(cluster):
    """The launcher's path: defaults merged (prepare_config), then the schema."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(cluster))
    validate_config(prepared)
    assert prepared["provider"]["type"] == "aws"
    assert set(prepared["available_node_types"]) == set(cluster["available_node_types"])


def test_ray_validator_rejects_a_broken_copy(cluster):
    """The validator used above really checks node types."""
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    broken = copy.deepcopy(cluster)
    broken["available_node_types"]["gpu-spot"]["resources"] = {"GPU": 0.5}
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(broken))


def test_image_is_pinned_to_the_projects_ray(cluster):
    import ray

    pyproject = (REPO / "pyproject.toml").read_text()
    pinned = re.search(r'"ray\[[^\]]*\]==([0-9.]+)"', pyproject).group(1)
    assert pinned == ray.__version__
    assert cluster["docker"]["image"] == f"rayproject/ray:{pinned}-py311-gpu"
    assert "head_image" not in cluster["docker"]
    assert "worker_image" not in cluster["docker"]


def test_every_gpu_worker_type_fits_what_the_paper_jobs_ask(cluster, paper):
    """A catalogue actor and a training worker (1 GPU) fit on every GPU type."""
    gpu = _gpu_workers(cluster)
    assert len(gpu) >= 2
    actor_gpus = max(paper.infer.gpus_per_actor, 1.0)
    for name, nt in gpu.items():
        res = nt["resources"]
        instance = nt["node_config"]["InstanceType"]
        assert (res["CPU"], res["GPU"]) == INSTANCE_TYPES[instance], name
        assert res["GPU"] >= actor_gpus, name
        assert res["CPU"] >= paper.infer.cpus_per_actor, name
        if paper.cluster.use_gpu:
            assert res["GPU"] >= 1 and res["CPU"] >= paper.cluster.cpus_per_worker, name


def test_gpu_workers_scale_from_zero_with_a_spot_first_fallback(cluster):
    gpu = _gpu_workers(cluster)
    def market(nt: dict) -> str:
        return nt["node_config"].get("InstanceMarketOptions", {}).get("MarketType", "")

    spot = {n: nt for n, nt in gpu.items() if market(nt) == "spot"}
    ondemand = {n: nt for n, nt in gpu.items() if n not in spot}
    assert spot and ondemand
    for nt in gpu.values():
        assert nt["min_workers"] == 0
        assert 0 < nt["max_workers"] <= cluster["max_workers"]
        assert nt.get("idle_timeout_s", 60 * cluster["idle_timeout_minutes"]) > 0
    for od in ondemand.values():
        twin = [s for s in spot.values() if s["resources"] == od["resources"]]
        assert twin, "the on-demand fallback must offer the resources of a spot type"
        assert all(od["priority"] < s["priority"] for s in twin)
    assert cluster["idle_timeout_minutes"] > 0
    assert sum(nt.get("min_workers", 0) for nt in _workers(cluster).values()) == 0


def test_head_runs_no_work_and_every_node_has_an_instance_role(cluster):
    head = cluster["available_node_types"][cluster["head_node_type"]]
    assert head["resources"] == {"CPU": 0}
    for name, nt in cluster["available_node_types"].items():
        profile = nt["node_config"]["IamInstanceProfile"]
        assert profile.get("Name") or profile.get("Arn"), name


def test_no_keys_no_public_dashboard_and_token_auth(cluster):
    text = CLUSTER_YAML.read_text()
    keys = r"AKIA[0-9A-Z]{12,}|aws_secret_access_key|aws_access_key_id"
    assert not re.search(keys, text, re.IGNORECASE)
    assert "IpPermissions" not in cluster["provider"].get("security_group", {})
    head_start = " ".join(cluster["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start and "0.0.0.0" not in text
    for kind in ("head", "worker"):
        cmds = cluster[f"{kind}_start_ray_commands"]
        start = next(c for c in cmds if "ray start" in c)
        assert "RAY_AUTH_MODE=token" in start and "RAY_AUTH_TOKEN_PATH=" in start


def test_setup_installs_the_project(cluster):
    assert cluster["file_mounts"]["~/ergo_ray"] == "."
    setup = cluster["setup_commands"]
    assert any(re.search(r"pip install .*~/ergo_ray", c) for c in setup)
    assert ".rayignore" in cluster["rsync_filter"]


# --- KubeRay RayJob ----------------------------------------------------------

def test_kuberay_rayjob_autoscales_gpu_workers_from_zero(paper):
    import ray

    job = yaml.safe_load(RAYJOB_YAML.read_text())
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    spec = job["spec"]["rayClusterSpec"]
    assert spec["rayVersion"] == ray.__version__
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["authOptions"]["mode"] == "token"
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    def limits(group: dict) -> dict:
        return group["template"]["spec"]["containers"][0]["resources"]["limits"]

    gpu_groups = [g for g in spec["workerGroupSpecs"] if "nvidia.com/gpu" in limits(g)]
    assert gpu_groups
    for g in gpu_groups:
        assert g["minReplicas"] == 0 and g["replicas"] == 0 and g["maxReplicas"] > 0
        gpus = int(limits(g)["nvidia.com/gpu"])
        assert gpus >= max(paper.infer.gpus_per_actor, 1.0)
    script = re.search(r"jobs/(\w+)\.py", job["spec"]["entrypoint"]).group(0)
    assert (REPO / script).is_file()
    assert "--actors" in job["spec"]["entrypoint"]


# --- job scripts and the uploaded working directory --------------------------

def test_one_job_script_per_stage():
    from ergo_ray.cli.main import STAGES

    scripts = {p.stem: p for p in (REPO / "jobs").glob("*.py") if p.name != "_entry.py"}
    assert set(scripts) == {module for module, _ in STAGES.values()}
    for stage, (module, _help) in STAGES.items():
        text = scripts[module].read_text()
        assert f'main(["{stage}", *sys.argv[1:]])' in text, module


def test_job_script_runs_the_stage_from_any_directory(tmp_path):
    """As ``python jobs/<stage>.py``: jobs/ leaves sys.path, the root joins it."""
    from ergo_ray.cli.main import STAGES

    module = next(m for m, _ in STAGES.values()
                  if importlib.util.find_spec(f"ergo_ray.cli.{m}") is not None)
    stage = next(s for s, (m, _) in STAGES.items() if m == module)
    script = REPO / "jobs" / f"{module}.py"
    probe = (
        "import runpy, sys; sys.path.insert(0, sys.argv[1]); "
        "runpy.run_path(sys.argv[2], run_name='probe'); import ergo_ray; "
        "print(repr(sys.path[0])); print(ergo_ray.__file__); "
        "print(any(p.rstrip('/') == sys.argv[1] for p in sys.path))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, str(REPO / "jobs"), str(script)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=True)
    first, ergo_file, jobs_left = out.stdout.split("\n")[:3]
    assert first == repr(str(REPO))
    assert Path(ergo_file).resolve().is_relative_to(REPO / "ergo_ray")
    assert jobs_left == "False"
    helped = subprocess.run([sys.executable, str(script), "--help"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0, helped.stderr
    assert f"ergo-ray {stage}" in helped.stdout and "--preset" in helped.stdout


def test_working_dir_upload_is_small_and_complete(tmp_path):
    """Package the repository exactly as ``ray job submit --working-dir .`` does."""
    from ray._private.ray_constants import get_runtime_env_default_excludes
    from ray._private.runtime_env.packaging import create_package

    pkg = tmp_path / "pkg.zip"
    create_package(str(REPO), pkg, include_gitignore=True,
                   excludes=get_runtime_env_default_excludes())
    names = set(zipfile.ZipFile(pkg).namelist())
    for needed in ("ergo_ray/cli/main.py", "ergo_ray/config/presets/paper.yaml",
                   "jobs/catalog.py", "jobs/train_cinn.py", "pyproject.toml"):
        assert needed in names, needed
    for name in names:
        assert not name.startswith((".git/", "tests/", ".ci/")), name
        assert "__pycache__" not in name and ".egg-info" not in name, name
    assert pkg.stat().st_size < 5 * 1024**2
