"""The catalogue on an autoscaling cluster, without a cloud (slow).

Ray's fake multi-node provider (``ray.autoscaler._private.fake_multi_node``) stands in
for AWS: the head runs the autoscaler (v2, as ``ray up`` starts it), and every node it
"launches" is a real raylet on this machine with the resources of its node type. The
worker types mirror ``cluster.yaml``: two GPU types that start at 0 (``gpu-spot`` with
the higher priority, ``gpu-ondemand`` as the fallback), a logical ``GPU`` resource each
(no CUDA device behind it: the actors run on the CPU, with a warning) and a short idle
timeout. The head has a few CPUs here (``cluster.yaml``'s has none) so that the readers
need no CPU worker type.

The wheel carries no ``example.yaml`` for the ``fake_multinode`` provider type, and the
v2 autoscaler fills a config's defaults from that file; so the provider is named as
``type: external`` with ``module:`` the same ``FakeMultiNodeProvider`` class, whose
defaults are built in. The cluster is torn down by killing its process sessions (the
fake nodes are children of the head's autoscaler), never with ``ray stop``.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from tests.integration.test_catalog import write_prepared_shards, write_random_bundle
from tests.integration.test_cluster import REPO, LocalCluster, _cluster_env, _free_port

pytestmark = [pytest.mark.slow, pytest.mark.ray]

#: Node id and type of the head as the fake provider knows it.
HEAD_ID = "fffffffffffffffffffffffffffffffffffffffffffffffffff00000"
HEAD_TYPE = "ray.head.default"
PROVIDER = "ray.autoscaler._private.fake_multi_node.node_provider.FakeMultiNodeProvider"
HEAD_CPUS = 2
#: Seconds a GPU node may stay idle before the autoscaler terminates it.
IDLE_TIMEOUT_S = 10
UNITS, ROWS = 8, 32


def _gpu_type(priority: int, max_workers: int) -> dict:
    """A GPU worker type like ``cluster.yaml``'s, scaled down to this machine."""
    return {
        "min_workers": 0,
        "max_workers": max_workers,
        "priority": priority,
        "idle_timeout_s": IDLE_TIMEOUT_S,
        # One catalogue actor per node, as one g6.2xlarge hosts one --gpus-per-actor 1
        # actor; one logical CPU (the actor's) so that reader tasks stay on the head.
        "resources": {"CPU": 1, "GPU": 1, "object_store_memory": 100 * 1024**2},
        "labels": {"ergo-ray/pool": "gpu"},
        "node_config": {},
    }


def autoscaling_config(gcs_address: str) -> dict:
    """The fake cluster's autoscaling config (what ``ray up`` writes to the head)."""
    return {
        "cluster_name": "ergo-ray-fake",
        "max_workers": 3,
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": IDLE_TIMEOUT_S / 60,
        "provider": {
            "type": "external",
            "module": PROVIDER,
            "gcs_address": gcs_address,
            "head_node_id": HEAD_ID,
            "launch_multiple": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
        },
        "auth": {},
        "docker": {},
        "head_node_type": HEAD_TYPE,
        "available_node_types": {
            HEAD_TYPE: {"resources": {"CPU": HEAD_CPUS}, "node_config": {},
                        "max_workers": 0},
            "gpu-spot": _gpu_type(priority=10, max_workers=2),
            "gpu-ondemand": _gpu_type(priority=1, max_workers=1),
        },
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


def _start_fake_cluster() -> LocalCluster:
    tmp = Path(tempfile.mkdtemp(prefix="era", dir="/tmp"))  # short: socket paths
    gcs_port, dash_port = _free_port(), _free_port()
    env = _cluster_env()
    env.update(
        # The jobs' ``python`` is this interpreter, activated or not.
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        # The fake nodes share one temp dir: a job's working_dir package, unpacked by each
        # node's agent into the same path, can vanish under another node's actor. The
        # package comes from this checkout instead, and jobs go without a working_dir.
        PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])]),
        RAY_FAKE_CLUSTER="1",
        RAY_enable_autoscaler_v2="1",
        RAY_CLOUD_INSTANCE_ID=HEAD_ID,
        RAY_OVERRIDE_NODE_ID_FOR_TESTING=HEAD_ID,
        AUTOSCALER_UPDATE_INTERVAL_S="1",
        # Ray's laptop mode: the fake nodes (started by the autoscaler, which is given
        # no address for them) bind the loopback address, not this machine's own.
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
    )
    cluster = LocalCluster(gcs_address=f"127.0.0.1:{gcs_port}",
                           dashboard_url=f"http://127.0.0.1:{dash_port}", env=env,
                           temp_dirs=[tmp])
    config = tmp / "autoscaling.yaml"
    config.write_text(yaml.safe_dump(autoscaling_config(cluster.gcs_address)))
    try:
        cluster.start_node([
            "--head", f"--port={gcs_port}", f"--temp-dir={tmp}",
            f"--autoscaling-config={config}", "--node-ip-address=127.0.0.1",
            f"--num-cpus={HEAD_CPUS}", "--object-store-memory=200000000",
            "--disable-usage-stats", "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dash_port}", f"--ray-client-server-port={_free_port()}",
            f"--dashboard-agent-listen-port={_free_port()}",
            f"--metrics-export-port={_free_port()}"])
        cluster.wait_for_nodes(1, "the fake cluster's head did not come up")
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="module")
def fake_cluster():
    """A head node with the autoscaler and the fake provider; no worker node yet."""
    cluster = _start_fake_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


def _all_nodes(cluster: LocalCluster) -> list[dict]:
    """Every node the cluster has known (alive and dead), with resources and labels."""
    return cluster.state("nodes")


def test_catalog_autoscales_gpu_nodes_and_they_go_when_idle(fake_cluster, tmp_path):
    from ergo_ray.config.loader import load_config

    cfg = load_config("ci", [], [])
    model = str(tmp_path / "model")
    write_random_bundle(model, cfg)
    data, out = tmp_path / "prepared", tmp_path / "catalog"
    expected = write_prepared_shards(data, UNITS, ROWS, cfg.preprocess.size)

    # Only the head to begin with: GPU nodes exist only while a job asks for GPUs.
    assert [n["node_id"] for n in _all_nodes(fake_cluster)] == [HEAD_ID]
    assert "GPU" not in fake_cluster.nodes()[0]["resources_total"]

    t0 = time.monotonic()
    sid = fake_cluster.submit(
        "jobs/catalog.py", "--model", model, "--in", str(data), "--out", str(out),
        "--actors", "2:2", "--gpus-per-actor", "1", "--cpus-per-actor", "1",
        "--batch-size", "16", "--samples", "16", "--preset", "ci",
        # The pool starts once both actors are up (the GPU nodes come one launch apart).
        env_vars={"RAY_DATA_DEFAULT_WAIT_FOR_MIN_ACTORS_S": "300"}, working_dir=False)
    job_s = time.monotonic() - t0

    # The autoscaler launched GPU nodes for the pending actors.
    nodes = {n["node_id"]: n for n in _all_nodes(fake_cluster)}
    gpu_nodes = {i for i, n in nodes.items() if n["resources_total"].get("GPU")}
    assert len(gpu_nodes) == 2, nodes

    # Both actors ran there (one per GPU node, on the CPU) and both processed rows.
    record = json.loads((out / "_meta" / "actors.json").read_text())
    started = record["started_actors"]
    assert len(started) == 2 and {a["node_id"] for a in started} == gpu_nodes, started
    assert {a["device"] for a in started} == {"cpu"}
    run = record["runs"][-1]
    rows = {a["actor_id"]: a["rows"] for a in run["actors"]}
    assert len(rows) == 2 and all(n > 0 for n in rows.values()), rows
    assert sum(rows.values()) == len(expected)
    logs = fake_cluster.ray("job", "logs", "--address", fake_cluster.dashboard_url, sid)
    assert "sees no CUDA device" in logs.stdout, logs.stdout[-3000:]

    # Every galaxy exactly once.
    import pyarrow.parquet as pq

    table = pq.read_table(out / "parts", columns=["object_id", "status"])
    ids = table.column("object_id").to_pylist()
    assert len(ids) == len(set(ids)) == len(expected) and set(ids) == set(expected)
    assert set(table.column("status").to_pylist()) == {"ok"}
    assert (out / "_SUCCESS").exists()

    # Idle GPU nodes are terminated by the autoscaler, once idle for the idle timeout.
    t1 = time.monotonic()
    deadline = t1 + IDLE_TIMEOUT_S + 90
    while gpu_nodes & {n["node_id"] for n in fake_cluster.nodes()}:
        assert time.monotonic() < deadline, "GPU nodes alive after the idle timeout"
        time.sleep(2)
    gone_s = time.monotonic() - t1
    assert {n["node_id"] for n in fake_cluster.nodes()} == {HEAD_ID}
    status = fake_cluster.ray("status", "--address", fake_cluster.gcs_address).stdout
    for node in _all_nodes(fake_cluster):
        if node["node_id"] not in gpu_nodes:
            continue
        assert node["state"] == "DEAD", node
        why = node["state_message"]
        idle = re.search(r"due to idle .* idle for ([0-9.]+) seconds", why)
        assert idle and float(idle.group(1)) >= IDLE_TIMEOUT_S, why
        # The autoscaler's record of the instance it launched: gpu-spot (priority 10).
        assert f"gpu-spot: NodeTerminated (instance_id: {node['node_id']})" in status
    print(f"\nautoscaling: job {job_s:.0f} s (rows per actor {sorted(rows.values())}), "
          f"GPU nodes gone {gone_s:.0f} s after it")
