"""A real two-node Ray cluster on this machine, fed with ``ray job submit`` (slow).

The head and one worker node are started with ``ray start`` (each with its own custom
resource, ``head_node`` / ``worker_node``), token authentication on (``RAY_AUTH_MODE=
token`` and a test token in ``RAY_AUTH_TOKEN`` for the nodes and for every ``ray`` CLI
call), the dashboard (Jobs API) on 127.0.0.1 only. Every stage runs as a Ray job with
the repository as its working directory, reading and writing the loopback S3 endpoint.
The cluster is torn down by killing the process sessions its ``ray start`` calls
created (never ``ray stop``, which would stop every Ray instance on the machine).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ergo_ray.runtime import ENV_DEFAULTS

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.s3]

REPO = Path(__file__).resolve().parents[2]
#: Logical CPUs per node: room for one 2-CPU catalogue actor and a 1-CPU reader task.
NODE_CPUS = 3
RAY = str(Path(sys.executable).with_name("ray"))
if not Path(RAY).exists():  # pragma: no cover - ray installed elsewhere on PATH
    RAY = shutil.which("ray") or "ray"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _process_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, session id) of every live (non-zombie) process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] not in ("Z", "X"):  # state, ppid, pgrp, session
            table[int(entry)] = (int(fields[1]), int(fields[3]))
    return table


@dataclass
class LocalCluster:
    """Handle on a ``ray start`` cluster owned by this test module."""

    gcs_address: str
    dashboard_url: str
    env: dict[str, str]
    sessions: list[int] = field(default_factory=list)
    temp_dirs: list[Path] = field(default_factory=list)
    #: (submission id, seconds from submit to the end of the job) of every job.
    timings: list[tuple[str, float]] = field(default_factory=list)

    # -- processes ---------------------------------------------------------------------
    def processes(self) -> list[int]:
        """Every live process of this cluster.

        The members of the sessions our ``ray start`` calls created (GCS, raylets,
        dashboard, workers), plus their descendants that left the session: Ray runs
        each job's driver, and a watcher of it, in a session of its own.
        """
        table = _process_table()
        ours = {pid for pid, (_, sid) in table.items() if sid in self.sessions}
        while True:
            more = {pid for pid, (ppid, sid) in table.items()
                    if pid not in ours and (ppid in ours or sid in ours)}
            if not more:
                return sorted(ours)
            ours |= more

    def session_processes(self, session: int) -> list[int]:
        """Every live process of one ``ray start`` session (a node), and descendants."""
        table = _process_table()
        ours = {pid for pid, (_, sid) in table.items() if sid == session}
        while True:
            more = {pid for pid, (ppid, sid) in table.items()
                    if pid not in ours and (ppid in ours or sid in ours)}
            if not more:
                return sorted(ours)
            ours |= more

    def stop(self) -> None:
        """SIGTERM, then SIGKILL, exactly this cluster's processes; remove its dirs."""
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 10.0)):
            for pid in self.processes():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + grace
            while self.processes() and time.monotonic() < deadline:
                time.sleep(0.2)
        for d in self.temp_dirs:
            shutil.rmtree(d, ignore_errors=True)

    # -- ray CLI -----------------------------------------------------------------------
    def ray(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run the ``ray`` CLI against this cluster (token in the environment only)."""
        return subprocess.run([RAY, *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout, cwd=REPO)

    def start_node(self, args: list[str]) -> None:
        """``ray start`` in a new session whose processes are all ours."""
        proc = subprocess.Popen([RAY, "start", *args], env=self.env, cwd=REPO,
                                start_new_session=True, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        self.sessions.append(proc.pid)
        out, _ = proc.communicate(timeout=180)
        if proc.returncode != 0:
            msg = f"ray start {' '.join(args)} failed:\n{out[-3000:]}"
            raise RuntimeError(msg)

    def api(self, path: str, query: list[tuple[str, str]] | None = None) -> dict:
        """GET the dashboard's REST API (Jobs, state) with the cluster's token."""
        url = f"{self.dashboard_url}{path}"
        if query:
            url += f"?{urllib.parse.urlencode(query)}"
        req = urllib.request.Request(
            url, headers={"Authorization": f"Bearer {self.env['RAY_AUTH_TOKEN']}"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read())

    def state(self, resource: str, **filters: str) -> list[dict]:
        """``/api/v0/<resource>`` of the state API (what ``ray list`` shows)."""
        query = [("detail", "1"), ("limit", "10000")]
        for key, value in filters.items():
            query += [("filter_keys", key), ("filter_predicates", "="),
                      ("filter_values", value)]
        body = self.api(f"/api/v0/{resource}", query)
        return list(body["data"]["result"]["result"])

    def wait_for_nodes(self, n: int, what: str, timeout_s: float = 60) -> None:
        """Wait until the state API lists ``n`` nodes; RuntimeError naming ``what`` if not."""
        deadline = time.monotonic() + timeout_s
        while True:
            with contextlib.suppress(OSError):  # the dashboard may still be starting
                if len(self.nodes()) == n:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(what)
            time.sleep(1)

    def nodes(self) -> list[dict]:
        """Alive nodes with their resources."""
        return self.state("nodes", state="ALIVE")

    def submit(self, script: str, *args: str, env_vars: dict[str, str] | None = None,
               timeout: float = 420, working_dir: bool = True) -> str:
        """``ray job submit`` a script, the repository as working dir (or, without one, the
        script by its path and the package from the nodes' ``PYTHONPATH``); its id."""
        sid = f"{Path(script).stem}-{uuid.uuid4().hex[:8]}"
        cmd = ["job", "submit", "--address", self.dashboard_url, "--submission-id", sid]
        if working_dir:
            cmd += ["--working-dir", str(REPO)]
        else:
            script = str(REPO / script)
        if env_vars:
            cmd += ["--runtime-env-json", json.dumps({"env_vars": env_vars})]
        cmd += ["--", "python", script, *args]
        t0 = time.monotonic()
        try:
            r = self.ray(*cmd, timeout=timeout)
        except subprocess.TimeoutExpired:
            self.ray("job", "stop", "--address", self.dashboard_url, sid)
            raise
        self.timings.append((sid, time.monotonic() - t0))
        job = self.job(sid)
        assert r.returncode == 0 and job["status"] == "SUCCEEDED", (
            f"job {sid}: {job['status']} (rc {r.returncode}): {job.get('message')}\n"
            f"{r.stdout[-6000:]}\n{r.stderr[-2000:]}")
        return sid

    def job(self, submission_id: str) -> dict:
        """The Jobs API's record of a submitted job (status, Ray job id, ...)."""
        return self.api(f"/api/jobs/{submission_id}")

    def job_actors(self, submission_id: str) -> list[dict]:
        """Every actor (alive or dead) the job created, with the node it ran on."""
        return self.state("actors", job_id=self.job(submission_id)["job_id"])


def _cluster_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RAY_ADDRESS", "RAY_AUTH", "PYTEST_"))}
    env.update(
        RAY_AUTH_MODE="token",
        # A throw-away token for this cluster only: held in memory, never written.
        RAY_AUTH_TOKEN=secrets.token_hex(32),
        RAY_DATA_DISABLE_PROGRESS_BARS="1",
        PYTHONUNBUFFERED="1",
        # jobs run `python`: this interpreter's, also when its venv is not activated (CI)
        PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        **ENV_DEFAULTS,
    )
    return env


def _common_args() -> list[str]:
    """``ray start`` options of every node of the two-node cluster."""
    return ["--node-ip-address=127.0.0.1", f"--num-cpus={NODE_CPUS}",
            "--object-store-memory=200000000", "--disable-usage-stats",
            f"--dashboard-agent-listen-port={_free_port()}",
            f"--metrics-export-port={_free_port()}"]


def _start_worker_node(cluster: LocalCluster) -> int:
    """Start a worker node (``worker_node`` resource) in a new session; its session."""
    worker_tmp = Path(tempfile.mkdtemp(prefix="erw", dir="/tmp"))
    cluster.temp_dirs.append(worker_tmp)
    cluster.start_node([
        f"--address={cluster.gcs_address}", f"--temp-dir={worker_tmp}",
        '--resources={"worker_node": 1}', *_common_args()])
    return cluster.sessions[-1]


def _start_cluster() -> LocalCluster:
    """Start the head and the worker node; on failure stop what was started, raise."""
    head_tmp = Path(tempfile.mkdtemp(prefix="erc", dir="/tmp"))  # short: socket paths
    gcs_port, dash_port = _free_port(), _free_port()
    cluster = LocalCluster(gcs_address=f"127.0.0.1:{gcs_port}",
                           dashboard_url=f"http://127.0.0.1:{dash_port}",
                           env=_cluster_env(), temp_dirs=[head_tmp])
    try:
        cluster.start_node([
            "--head", f"--port={gcs_port}", f"--temp-dir={head_tmp}",
            "--dashboard-host=127.0.0.1", f"--dashboard-port={dash_port}",
            f"--ray-client-server-port={_free_port()}",
            '--resources={"head_node": 1}', *_common_args()])
        _start_worker_node(cluster)
        cluster.wait_for_nodes(2, "the worker node did not join the head")
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="module")
def ray_cluster(s3_endpoint):
    """A head node and one worker node, ``NODE_CPUS`` logical CPUs each, token auth on.

    Depends on ``s3_endpoint`` so that the loopback S3 credentials are in the nodes'
    environment (as an instance role would be on a cloud node). Up to three attempts:
    on a busy machine a raylet can miss Ray's fixed 30 s start-up deadline.
    """
    for attempt in range(3):
        try:
            cluster = _start_cluster()
            break
        except (RuntimeError, subprocess.TimeoutExpired):
            if attempt == 2:
                raise
    try:
        yield cluster
    finally:
        cluster.stop()
        jobs = ", ".join(f"{sid} {t:.0f} s" for sid, t in cluster.timings)
        print(f"\ncluster jobs: {jobs}")


def test_cluster_has_two_nodes_with_own_resources_and_requires_the_token(ray_cluster):
    nodes = ray_cluster.nodes()
    kinds = sorted(k for n in nodes for k in n["resources_total"]
                   if k in ("head_node", "worker_node"))
    assert kinds == ["head_node", "worker_node"]
    assert all(n["resources_total"]["CPU"] == NODE_CPUS for n in nodes)
    # The Jobs API refuses a request without the token, and one with a wrong token.
    for headers in ({}, {"Authorization": "Bearer " + "0" * 64}):
        req = urllib.request.Request(f"{ray_cluster.dashboard_url}/api/jobs/",
                                     headers=headers)
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=60)
        assert err.value.code in (401, 403)
    assert isinstance(ray_cluster.api("/api/jobs/"), list)


# ------------------------------------------------------------------ the pipeline
# One chain of jobs, each reading the previous one's output from the loopback S3:
# mock survey -> prepare -> train-cinn (model bundle) -> catalog of the survey.
N_GALAXIES, PROJECTIONS = 24, 2


@pytest.fixture(scope="module")
def s3_bucket(s3_endpoint):
    import boto3

    name = f"cl-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(
        Bucket=name)
    return name


@pytest.fixture(scope="module")
def storage_settings(s3_endpoint):
    from ergo_ray.config.schema import StorageConfig

    return StorageConfig(endpoint_url=s3_endpoint, region="us-east-1")


def _settings(s3_endpoint: str) -> list[str]:
    return ["--preset", "ci", "--set", f"storage.endpoint_url={s3_endpoint}",
            "--set", "storage.region=us-east-1"]


def _parquet_column(url: str, column: str, storage_cfg) -> list:
    import pyarrow.parquet as pq

    from ergo_ray.io import storage

    values: list = []
    for f in storage.list_files(url, storage_cfg, (".parquet",)):
        with storage.open_read(f, storage_cfg) as fh:
            values += pq.read_table(fh, columns=[column]).column(column).to_pylist()
    return values


@pytest.fixture(scope="module")
def survey(ray_cluster, s3_endpoint, s3_bucket, storage_settings):
    """A small raw mock survey (Parquet shards) in S3, and its object ids."""
    url = f"s3://{s3_bucket}/mock/tng100"
    ray_cluster.submit(
        "jobs/mock.py", "--domain", "tng100", "--n", str(N_GALAXIES),
        "--projections", str(PROJECTIONS), "--format", "shards", "--out", url,
        *_settings(s3_endpoint), "--set", "mock.rows_per_file=8",
        # A job runtime_env that sets an AWS variable the driver also forwards: Ray
        # refuses such a merge unless the stage leaves the job's env alone.
        env_vars={"AWS_DEFAULT_REGION": "us-east-1"})
    ids = _parquet_column(f"{url}/catalog", "object_id", storage_settings)
    assert len(ids) == len(set(ids)) == N_GALAXIES * PROJECTIONS
    return url, set(ids)


@pytest.fixture(scope="module")
def prepared(ray_cluster, s3_endpoint, s3_bucket, survey):
    url = f"s3://{s3_bucket}/prepared/tng100"
    ray_cluster.submit("jobs/prepare.py", "--in", survey[0], "--out", url,
                       *_settings(s3_endpoint))
    return url


@pytest.fixture(scope="module")
def encoder(s3_bucket, storage_settings):
    """An untrained encoder in ``train-nnclr``'s export format (the NNCLR job itself is
    covered by its own integration tests; here it would only add a minute)."""
    from ergo_ray.config.loader import load_config
    from ergo_ray.models.encoder import build_encoder
    from ergo_ray.train.checkpoint import export_encoder

    cfg = load_config("ci", [], [])
    clr, size = cfg.clr, cfg.preprocess.size
    url = f"s3://{s3_bucket}/models/nnclr/encoder.pt"
    export_encoder(url, build_encoder(clr.widths, clr.blocks, clr.rep_dim, size),
                   clr=clr.model_dump(mode="json"),
                   preprocess=cfg.preprocess.model_dump(mode="json"), in_size=size,
                   rep_dim=clr.rep_dim, storage=storage_settings)
    return url


@pytest.fixture(scope="module")
def bundle(ray_cluster, s3_endpoint, s3_bucket, prepared, encoder):
    url = f"s3://{s3_bucket}/models/bundle"
    sid = ray_cluster.submit("jobs/train_cinn.py", "--data", prepared,
                             "--encoder", encoder, "--out", url, "--workers", "1",
                             *_settings(s3_endpoint))
    return url, sid


def test_train_cinn_job_writes_a_loadable_bundle(ray_cluster, bundle, prepared,
                                                 storage_settings):
    import numpy as np
    import pyarrow.parquet as pq

    import ergo_ray
    from ergo_ray.io import storage

    url, sid = bundle
    model = ergo_ray.load_model(url, storage=storage_settings)
    assert model.model_id and model.input_size == 24  # the ci preset's preprocess.size
    shard = storage.list_files(f"{prepared}/shards", storage_settings, (".parquet",))[0]
    with storage.open_read(shard, storage_settings) as fh:
        table = pq.read_table(fh, columns=["image", "redshift", "i_mag"])
    s = model.input_size
    images = np.asarray(table.column("image").to_pylist()[:4], dtype=np.uint8)
    images = images.reshape(-1, 3, s, s)
    reps = model.represent(images)
    assert reps.shape == (len(images), 256) and np.isfinite(reps).all()
    obs = {c: table.column(c).to_numpy()[:4] for c in ("redshift", "i_mag")}
    samples = model.sample_posterior(reps, 16, seed=0, observables=obs)
    assert samples.shape == (len(images), 16, 3)
    # Ray Train ran the cINN on the cluster: the job created its worker actors there.
    classes = {a["class_name"] for a in ray_cluster.job_actors(sid)}
    assert any("TrainWorker" in c for c in classes), classes


def test_catalog_job_writes_every_galaxy_once_with_actors_on_both_nodes(
        ray_cluster, s3_endpoint, s3_bucket, survey, bundle, storage_settings):
    from ergo_ray.io import storage

    survey_url, expected = survey
    out = f"s3://{s3_bucket}/catalogs/tng100"
    sid = ray_cluster.submit(
        "jobs/catalog.py", "--model", bundle[0], "--in", survey_url, "--out", out,
        # Two actors of 2 CPUs: one fits a 3-CPU node (with a 1-CPU reader beside it),
        # two do not, so Ray must place one on each node; the pool starts once both are up.
        "--actors", "2:2", "--cpus-per-actor", "2", "--batch-size", "8",
        "--samples", "20", *_settings(s3_endpoint),
        env_vars={"RAY_DATA_DEFAULT_WAIT_FOR_MIN_ACTORS_S": "300"})

    # Every galaxy exactly once, in the bucket.
    assert storage.exists(f"{out}/_SUCCESS", storage_settings)
    ids = _parquet_column(f"{out}/parts", "object_id", storage_settings)
    assert len(ids) == len(set(ids)) == len(expected)
    assert set(ids) == expected
    status = _parquet_column(f"{out}/parts", "status", storage_settings)
    assert status.count("ok") == len(expected)

    # Model actors ran on both nodes: each wrote its start record after loading the bundle
    # (the job's own record), the state API places the job's model actors on both, and
    # the rows came from the actors of both nodes (readers cut every unit into blocks of
    # ``--batch-size`` galaxies, which the pool spreads over its actors).
    nodes = {n["node_id"]: ("head" if "head_node" in n["resources_total"] else "worker")
             for n in ray_cluster.nodes()}
    actors_json = storage.read_bytes(f"{out}/_meta/actors.json", storage_settings)
    record = json.loads(actors_json)
    started = record["started_actors"]
    assert {nodes[a["node_id"]] for a in started} == {"head", "worker"}, started
    manifest = json.loads(storage.read_bytes(f"{bundle[0]}/manifest.json", storage_settings))
    assert {a["model_id"] for a in started} == {manifest["model_id"]}
    rows_by_kind = {nodes[node]: rows for node, rows in record["nodes"].items()}
    assert set(rows_by_kind) == {"head", "worker"}, record["nodes"]
    assert min(rows_by_kind.values()) > 0
    assert sum(rows_by_kind.values()) == len(expected)
    predictors = [a for a in ray_cluster.job_actors(sid)
                  if "PosteriorPredictor" in a["class_name"]]
    assert {nodes[a["node_id"]] for a in predictors} == {"head", "worker"}, predictors




# ------------------------------------------------------------------ node loss
FAULT_UNITS, FAULT_ROWS = 12, 64


def _job_rows(cluster: LocalCluster, submission_id: str) -> int:
    """Rows the catalogue job has reported so far (its latest progress line)."""
    logs = cluster.api(f"/api/jobs/{submission_id}/logs")["logs"]
    counts = re.findall(r"catalog: ([\d,]+) rows", logs)
    return int(counts[-1].replace(",", "")) if counts else 0


def test_catalog_job_survives_the_loss_of_a_worker_node(
        ray_cluster, s3_endpoint, s3_bucket, bundle, storage_settings, tmp_path):
    """Kill every process of the worker node while the catalogue runs; a replacement
    node joins (as the autoscaler would launch one); the job ends, every galaxy once.

    The replacement is needed: the lost model actor (2 of the 3 CPUs of a node) restarts
    only where it fits, and its tasks in flight wait for it. It also keeps the module's
    cluster at two nodes for any test after this one.
    """
    from ergo_ray.config.loader import load_config
    from ergo_ray.io import storage
    from tests.integration.test_catalog import write_prepared_shards

    size = load_config("ci", [], []).preprocess.size
    local = tmp_path / "prepared"
    expected = write_prepared_shards(local, FAULT_UNITS, FAULT_ROWS, size, seed=7)
    data = f"s3://{s3_bucket}/prepared-faults"
    for f in sorted((local / "shards").iterdir()):
        storage.write_bytes(f"{data}/shards/{f.name}", f.read_bytes(), storage_settings)
    out = f"s3://{s3_bucket}/catalogs/faults"
    worker_session = ray_cluster.sessions[-1]
    old_nodes = {n["node_id"]: "worker" if "worker_node" in n["resources_total"]
                 else "head" for n in ray_cluster.nodes()}
    assert sorted(old_nodes.values()) == ["head", "worker"]

    sid = f"catalog-faults-{uuid.uuid4().hex[:8]}"
    env = {"env_vars": {"RAY_DATA_DEFAULT_WAIT_FOR_MIN_ACTORS_S": "300"}}
    r = ray_cluster.ray(
        "job", "submit", "--address", ray_cluster.dashboard_url,
        "--working-dir", str(REPO), "--submission-id", sid, "--no-wait",
        "--runtime-env-json", json.dumps(env),
        "--", "python", "jobs/catalog.py", "--model", bundle[0], "--in", data,
        "--out", out, "--actors", "2:2", "--cpus-per-actor", "2", "--batch-size", "16",
        "--samples", "200", *_settings(s3_endpoint), "--set", "infer.log_every_s=1")
    assert r.returncode == 0, r.stdout + r.stderr
    t0 = time.monotonic()

    # Mid-catalogue: once rows are coming back, kill every process of the worker node.
    while (rows_at_kill := _job_rows(ray_cluster, sid)) == 0:
        status = ray_cluster.job(sid)["status"]
        assert status in ("PENDING", "RUNNING"), ray_cluster.job(sid)
        assert time.monotonic() - t0 < 300, "the catalogue job produced no rows"
        time.sleep(0.5)
    victims = ray_cluster.session_processes(worker_session)
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic() - t0
    assert victims and ray_cluster.job(sid)["status"] == "RUNNING"
    assert rows_at_kill < len(expected), "the kill came after the last row"

    # A replacement worker node joins; the job runs on to the end.
    _start_worker_node(ray_cluster)
    while (job := ray_cluster.job(sid))["status"] in ("PENDING", "RUNNING"):
        assert time.monotonic() - t0 < 420, f"job {sid} still running"
        time.sleep(2)
    ray_cluster.timings.append((sid, time.monotonic() - t0))
    assert job["status"] == "SUCCEEDED", job

    # Every galaxy exactly once.
    assert storage.exists(f"{out}/_SUCCESS", storage_settings)
    ids = _parquet_column(f"{out}/parts", "object_id", storage_settings)
    assert len(ids) == len(set(ids)) == len(expected) and set(ids) == set(expected)
    status = _parquet_column(f"{out}/parts", "status", storage_settings)
    assert status.count("ok") == len(expected)

    # The old worker node is dead, and with it the model actor it hosted.
    nodes = {n["node_id"]: n for n in ray_cluster.state("nodes")}
    old_worker = next(i for i, kind in old_nodes.items() if kind == "worker")
    assert nodes[old_worker]["state"] == "DEAD"
    predictors = [a for a in ray_cluster.job_actors(sid)
                  if "PosteriorPredictor" in a["class_name"]]
    assert old_worker in {a["node_id"] for a in predictors} or any(
        a.get("num_restarts", 0) for a in predictors), predictors
    done_at = time.monotonic() - t0
    print(f"\nnode loss: killed {len(victims)} processes at {killed_at:.0f} s "
          f"({rows_at_kill}/{len(expected)} rows), job done at {done_at:.0f} s")
