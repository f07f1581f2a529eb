"""No credential travels to a cluster: a real ``ray start --head`` on 127.0.0.1.

A stage run against the cluster with ``RAY_ADDRESS`` and sentinel AWS credentials in its
environment must leave the secret in no runtime_env (the driver's, the job's and the
actors' records in the GCS, a worker's), in no log line and in no file under
``--out``; non-secret settings (the region) still reach the workers. The head runs
without a dashboard; the GCS is read with Ray's own client. The cluster is torn down by
killing the process session its ``ray start`` created (never ``ray stop``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from tests.integration.test_cluster import REPO, LocalCluster, _cluster_env, _free_port

pytestmark = [pytest.mark.slow, pytest.mark.ray]

SECRET = "sentinel-secret-4f1c9e77d2"
TOKEN = "sentinel-session-token-8b3a"
KEY_ID = "AKIASENTINEL0000TEST"
REGION = "eu-sentinel-1"

#: The stage's driver: ``ergo-ray mock`` (Ray tasks on the cluster), then what Ray
#: holds.
DRIVER = textwrap.dedent("""
    import json, sys
    import ray
    from ergo_ray.cli.main import main

    out, report = sys.argv[1], sys.argv[2]
    rc = main(["mock", "--domain", "tng100", "--n", "2", "--projections", "1",
               "--seed", "1", "--format", "shards", "--stamp-px", "32",
               "--preset", "ci", "--out", out])

    @ray.remote(num_cpus=0)
    def worker_view():
        import os
        return {"runtime_env": ray.get_runtime_context().runtime_env,
                "env": {k: v for k, v in os.environ.items() if k.startswith("AWS_")}}

    @ray.remote(num_cpus=0)
    class Probe:
        def view(self):
            return ray.get_runtime_context().runtime_env

    probe = Probe.remote()
    actor_view = ray.get(probe.view.remote())
    from ray._private.state import state
    from ray._raylet import GcsClient
    from ray.core.generated import gcs_pb2

    gcs = GcsClient(address=ray.get_runtime_context().gcs_address)
    accessor = state._connect_and_get_accessor()
    body = {
        "rc": rc,
        "driver_runtime_env": ray.get_runtime_context().runtime_env,
        "worker": ray.get(worker_view.remote()),
        "actor_runtime_env": actor_view,
        "jobs": [str(j) for j in gcs.get_all_job_info().values()],
        "actors": [str(gcs_pb2.ActorTableData.FromString(a))
                   for a in accessor.get_actor_table(None, None)],
    }
    with open(report, "w") as f:
        json.dump(body, f, default=str)
""")


@pytest.fixture(scope="module")
def head():
    """One head node on 127.0.0.1, no dashboard, token auth on; torn down by session."""
    tmp = Path(tempfile.mkdtemp(prefix="erh", dir="/tmp"))  # short: socket paths
    port = _free_port()
    env = {k: v for k, v in _cluster_env().items() if not k.startswith("AWS_")}
    cluster = LocalCluster(gcs_address=f"127.0.0.1:{port}", dashboard_url="", env=env,
                           temp_dirs=[tmp])
    try:
        cluster.start_node([
            "--head", f"--port={port}", f"--temp-dir={tmp}",
            "--node-ip-address=127.0.0.1", "--include-dashboard=false", "--num-cpus=2",
            "--object-store-memory=100000000",
            "--disable-usage-stats", f"--ray-client-server-port={_free_port()}",
            f"--dashboard-agent-listen-port={_free_port()}",
            f"--metrics-export-port={_free_port()}"])
        yield cluster
    finally:
        cluster.stop()


def test_stage_against_a_cluster_ships_no_credential(head, tmp_path):
    out, report = tmp_path / "out", tmp_path / "report.json"
    env = dict(head.env, RAY_ADDRESS=head.gcs_address, AWS_ACCESS_KEY_ID=KEY_ID,
               AWS_SECRET_ACCESS_KEY=SECRET, AWS_SESSION_TOKEN=TOKEN, AWS_REGION=REGION)
    r = subprocess.run([sys.executable, "-c", DRIVER, str(out), str(report)], env=env,
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    body = json.loads(report.read_text())
    assert body["rc"] == 0
    assert body["jobs"] and body["actors"], "the GCS reported no job or actor to check"
    # the non-secret setting travelled, so the runtime_env really was the job's
    assert body["driver_runtime_env"]["env_vars"] == {"AWS_REGION": REGION}
    assert body["worker"]["env"].get("AWS_REGION") == REGION
    for secret in (SECRET, TOKEN, KEY_ID):
        assert secret not in json.dumps(body), secret
        assert secret not in r.stdout + r.stderr, secret
        written = [p for p in out.rglob("*") if p.is_file()]
        assert written, "the stage wrote nothing"
        for p in written:
            assert secret.encode() not in p.read_bytes(), (secret, p)
