"""Representations of a prepared set with the frozen encoder, as a Ray Data job.

``train-cinn`` embeds the training, validation and test splits of the simulated domains
with it, and ``ergo-ray embed`` writes the representations of any prepared set. Input:
prepared shards (``ergo-ray prepare --out URL``; ``URL/shards/*.parquet`` or a folder of
Parquet files). Output rows: every input column except the stamp, plus ``representation``,
a ``fixed_size_list<float32>[rep_dim]``.

The UDF is :class:`Embedder`, a callable class run on an ``ActorPoolStrategy`` pool: each
actor loads the encoder once (checking its sha256 when given) and embeds whole batches on
its device.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from ergo_ray.io import storage as st

if TYPE_CHECKING:
    import ray.data

    from ergo_ray.config.schema import StorageConfig

log = logging.getLogger("ergo_ray")

__all__ = [
    "REPRESENTATION",
    "Embedder",
    "embed_dataset",
    "embed_set",
    "read_representations",
    "representation_matrix",
    "write_filesystem",
]

#: Name of the representation column.
REPRESENTATION = "representation"
#: Raw-image columns never carried into the output.
_DROP = ("image", "mask", "variance")


class Embedder:
    """Ray Data actor UDF: prepared uint8 stamps → representations.

    Parameters
    ----------
    encoder_url : str
        An ``encoder.pt`` (``train-nnclr`` output or a model bundle's).
    storage_cfg : StorageConfig or None
        Storage settings.
    image_size : int
        Side S of the stamps (the ``image`` column holds 3·S·S bytes).
    sha256 : str, optional
        Expected digest of the encoder file.
    batch_size : int
        Images per forward pass.
    mixed_precision : bool
        Autocast to float16 on CUDA.
    threads : int
        Torch intra-op threads on CPU.
    """

    def __init__(
        self,
        encoder_url: str,
        storage_cfg: StorageConfig | None,
        image_size: int,
        sha256: str | None = None,
        batch_size: int = 256,
        mixed_precision: bool = True,
        threads: int = 1,
    ) -> None:
        import torch

        from ergo_ray.shared.encoder_file import load_encoder_file

        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device.type == "cpu":
            torch.set_num_threads(max(1, int(threads)))
        self.encoder = load_encoder_file(encoder_url, storage_cfg, sha256).to(
            self.device
        )
        self.size = int(image_size)
        self.batch_size = int(batch_size)
        self.amp = bool(mixed_precision) and self.device.type == "cuda"

    def embed(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, 3, S, S) → float32 (N, rep_dim)."""
        import torch

        out = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                batch = images[start : start + self.batch_size]
                x = torch.from_numpy(np.require(batch, requirements=["C", "W"]))
                x = x.to(self.device, non_blocking=True).float().div_(255.0)
                with torch.autocast(
                    self.device.type, dtype=torch.float16, enabled=self.amp
                ):
                    out.append(self.encoder(x).float().cpu().numpy())
        return np.concatenate(out) if out else np.empty((0, 0), np.float32)

    def __call__(self, batch: pa.Table) -> pa.Table:
        """Replace the ``image`` column of a pyarrow batch by ``representation``."""
        column = batch.column("image").combine_chunks()
        flat = column.flatten().to_numpy(zero_copy_only=False)
        images = np.asarray(flat, np.uint8).reshape(
            len(column), 3, self.size, self.size
        )
        reps = self.embed(images)
        keep = [c for c in batch.column_names if c not in _DROP]
        out = batch.select(keep)
        return out.append_column(
            REPRESENTATION,
            pa.FixedSizeListArray.from_arrays(
                pa.array(reps.reshape(-1), pa.float32()), reps.shape[1]
            ),
        )


def embed_dataset(
    files: Sequence[str],
    encoder_url: str,
    *,
    image_size: int,
    storage: StorageConfig | None = None,
    sha256: str | None = None,
    domains: Sequence[str] | None = None,
    splits: Sequence[str] | None = None,
    batch_size: int = 256,
    actors: tuple[int, int] = (1, 1),
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
    mixed_precision: bool = True,
) -> ray.data.Dataset:
    """Lazy Ray dataset of representations of prepared shards.

    Parameters
    ----------
    files : sequence of str
        Prepared shard URLs (one scheme and storage).
    encoder_url : str
        The ``encoder.pt`` to use.
    image_size : int
        Stamp side S.
    storage : StorageConfig, optional
        Storage settings.
    sha256 : str, optional
        Expected digest of the encoder file.
    domains, splits : sequence of str, optional
        Keep only rows of these domains / splits.
    batch_size : int
        Rows per batch (an integer, as GPU actors require).
    actors : tuple of int
        Minimum and maximum actor-pool size.
    num_cpus, num_gpus : float
        Resources per actor.
    mixed_precision : bool
        Autocast on CUDA.

    Returns
    -------
    ray.data.Dataset
        Input columns without the stamp, plus ``representation``.
    """
    import ray.data
    from ray.data.expressions import col

    fs, _ = st.arrow_fs(files[0], storage)
    paths = [st.locate(f).path for f in files]
    ds = ray.data.read_parquet(paths, filesystem=fs)
    if domains is not None:
        ds = ds.filter(expr=col("domain").is_in(list(domains)))
    if splits is not None:
        ds = ds.filter(expr=col("split").is_in(list(splits)))
    lo, hi = actors
    return ds.map_batches(
        Embedder,
        fn_constructor_kwargs={
            "encoder_url": encoder_url,
            "storage_cfg": storage,
            "image_size": int(image_size),
            "sha256": sha256,
            "batch_size": int(batch_size),
            "mixed_precision": mixed_precision,
            "threads": max(1, int(num_cpus)),
        },
        batch_size=int(batch_size),
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(min_size=int(lo), max_size=int(hi)),
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        udf_modifying_row_count=False,
    )


def write_filesystem(url: str, storage: StorageConfig | None = None) -> tuple[Any, str]:
    """Return a pyarrow filesystem and path for Ray's writers (``write_parquet``, Train storage).

    Local folders use pyarrow's local filesystem. For S3 the s3fs client is wrapped as a
    pyarrow ``PyFileSystem``: pyarrow's own S3 client completes every upload as multipart,
    which some S3-compatible servers (moto 5.2, the loopback test server) reject, while s3fs
    uses a single PUT for small objects.
    """
    import pyarrow.fs as pafs

    loc = st.locate(url)
    if loc.scheme == "file":
        st.makedirs(url, storage)
        return pafs.LocalFileSystem(), loc.path
    fs, path = st.fsspec_fs(url, storage)
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def read_representations(url: str, storage: StorageConfig | None = None) -> pa.Table:
    """Read a folder of representation Parquet files into one table.

    Parameters
    ----------
    url : str
        Folder written by :func:`embed_dataset` + ``write_parquet`` (or ``ergo-ray embed``).
    storage : StorageConfig, optional
        Storage settings.

    Returns
    -------
    pyarrow.Table
        All rows.
    """
    import pyarrow.parquet as pq

    files = st.list_files(url, storage, suffixes=(".parquet",))
    tables = []
    for f in files:
        fs, path = st.arrow_fs(f, storage)
        tables.append(pq.read_table(path, filesystem=fs))
    if not tables:
        return pa.table({})
    return pa.concat_tables(tables, promote_options="default")


def representation_matrix(table: pa.Table, column: str = REPRESENTATION) -> np.ndarray:
    """Return the ``representation`` column as float32 (N, D)."""
    arr: Any = table.column(column).combine_chunks()
    d = arr.type.list_size
    return np.asarray(arr.flatten().to_numpy(zero_copy_only=False), np.float32).reshape(
        -1, d
    )


def _replace_parquet(ds: Any, out_url: str, storage: Any) -> int:
    """Write a dataset as the Parquet files of ``out_url`` (replacing its previous ones).

    Returns
    -------
    int
        Rows written.
    """
    import pyarrow.parquet as pq

    if st.exists(out_url, storage):
        for old in st.list_files(out_url, storage, suffixes=(".parquet",)):
            st.remove(old, storage)
    fs, path = write_filesystem(out_url, storage)
    ds.write_parquet(path, filesystem=fs)
    n = 0
    for f in st.list_files(out_url, storage, suffixes=(".parquet",)):
        ffs, fpath = st.arrow_fs(f, storage)
        n += pq.read_metadata(fpath, filesystem=ffs).num_rows
    return n


def embed_set(
    model_url: str,
    in_url: str,
    out_url: str,
    cfg: Any,
    gpus_per_actor: float | None = None,
) -> tuple[int, str]:
    """Run the ``embed`` stage: representations of a prepared set with a bundle's encoder.

    Parameters
    ----------
    model_url : str
        Model bundle folder.
    in_url : str
        Prepared shard folder.
    out_url : str
        Output folder (its previous Parquet files are replaced).
    cfg : RunConfig
        Run configuration (``infer`` section sizes the actor pool).
    gpus_per_actor : float, optional
        Overrides ``cfg.infer.gpus_per_actor``.

    Returns
    -------
    tuple of (int, str)
        Rows written and the bundle's ``model_id``.

    Raises
    ------
    InputError
        If the set's stamps do not have the bundle's input size.
    """
    import json

    from ergo_ray.errors import InputError
    from ergo_ray.io.prepared import discover_inputs
    from ergo_ray.shared.bundle_format import read_verified

    storage = cfg.storage
    manifest, files = read_verified(
        model_url, storage, names=("encoder.pt", "transforms.json")
    )
    size = int(json.loads(files["transforms.json"])["input_size"])
    sha = manifest["files"]["encoder.pt"]["sha256"]
    (inp,) = discover_inputs([in_url], storage)
    if inp.image_size != size:
        msg = (
            f"{st.redact(in_url)}: stamps are {inp.image_size} px but the model takes {size} px;"
            f" prepare the set with preprocess.size={size}"
        )
        raise InputError(msg, source=in_url)
    gpus = cfg.infer.gpus_per_actor if gpus_per_actor is None else gpus_per_actor
    ds = embed_dataset(
        list(inp.files),
        st.join(model_url, "encoder.pt"),
        image_size=size,
        storage=storage,
        sha256=sha,
        batch_size=cfg.infer.batch_size,
        actors=(cfg.infer.actors_min, cfg.infer.actors_max),
        num_cpus=cfg.infer.cpus_per_actor,
        num_gpus=float(gpus),
        mixed_precision=cfg.infer.mixed_precision,
    )
    n = _replace_parquet(ds, out_url, storage)
    st.write_bytes(
        st.join(out_url, "_meta", "model.json"),
        json.dumps(
            {"model_id": manifest["model_id"], "model": st.redact(model_url)}
        ).encode(),
        storage,
    )
    return n, str(manifest["model_id"])
