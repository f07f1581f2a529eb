"""Prepared-shard folders: find their shards and check that they can be used together.

A prepared folder is what ``prepare`` writes (``URL/shards/*.parquet``, the config under
``URL/_meta/``); training, ``embed`` and ``validate`` read it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from ergo_ray.errors import InputError, StorageError
from ergo_ray.io import storage as st
from ergo_ray.io.schemas import META_IMAGE_SHAPE

if TYPE_CHECKING:
    from ergo_ray.config.schema import StorageConfig

__all__ = ["PreparedInput", "discover_inputs"]

log = logging.getLogger("ergo_ray")


@dataclass(frozen=True)
class PreparedInput:
    """One prepared-shard folder.

    Attributes
    ----------
    url : str
        The folder URL as given.
    files : tuple of str
        Shard URLs, sorted.
    image_size : int
        Side S of the square stamps.
    columns : tuple of str
        Columns present in the shards.
    preprocess : dict or None
        The ``preprocess`` section of the config that produced the shards
        (``URL/_meta/config.yaml``), when recorded.
    """

    url: str
    files: tuple[str, ...]
    image_size: int
    columns: tuple[str, ...]
    preprocess: dict[str, Any] | None = field(default=None, compare=False)


def discover_inputs(
    urls: Sequence[str], storage: StorageConfig | None = None
) -> list[PreparedInput]:
    """Find the shards of each prepared folder and check that they can be trained on together.

    Parameters
    ----------
    urls : sequence of str
        Prepared folders (``URL/shards/*.parquet``) or folders of Parquet shards.
    storage : StorageConfig, optional
        Storage settings for S3 URLs.

    Returns
    -------
    list of PreparedInput
        One entry per URL, in the given order.

    Raises
    ------
    InputError
        If a URL has no shards, lacks the ``image``/``split``/``domain`` columns, or the
        inputs' stamp sizes differ.
    """
    if not urls:
        raise InputError("no prepared data given (--data URL ...)")
    out: list[PreparedInput] = []
    for url in urls:
        files = _shard_files(url, storage)
        schema = _read_schema(files[0], storage)
        missing = {"image", "split", "domain"} - set(schema.names)
        if missing:
            msg = f"{st.redact(files[0])}: not a prepared shard, missing columns {sorted(missing)}"
            raise InputError(msg, source=files[0])
        size = _image_size(schema, files[0])
        out.append(PreparedInput(url, tuple(files), size, tuple(schema.names),
                                 _preprocess_section(url, storage)))
    sizes = {p.image_size for p in out}
    if len(sizes) > 1:
        detail = ", ".join(f"{st.redact(p.url)}: {p.image_size} px" for p in out)
        msg = f"prepared inputs have different stamp sizes ({detail}); prepare them alike"
        raise InputError(msg, source=out[0].url)
    return out


def _shard_files(url: str, storage: StorageConfig | None) -> list[str]:
    shards = st.join(url, "shards")
    base = shards if st.exists(shards, storage) else url
    try:
        files = st.list_files(base, storage, suffixes=(".parquet",))
    except StorageError as err:
        msg = f"{st.redact(url)}: cannot list prepared shards: {err}"
        raise InputError(msg, source=url) from err
    if not files:
        raise InputError(f"{st.redact(url)}: no prepared shards (*.parquet) found", source=url)
    return files


def _read_schema(file_url: str, storage: StorageConfig | None) -> pa.Schema:
    fs, path = st.arrow_fs(file_url, storage)
    try:
        return pq.read_schema(path, filesystem=fs)
    except Exception as err:
        msg = f"{st.redact(file_url)}: cannot read Parquet schema: {err}"
        raise InputError(msg, source=file_url) from err


def _image_size(schema: pa.Schema, file_url: str) -> int:
    meta = schema.metadata or {}
    field_type = schema.field("image").type
    if META_IMAGE_SHAPE in meta:
        try:
            c, h, w = (int(v) for v in meta[META_IMAGE_SHAPE].decode().split(","))
        except ValueError as err:
            msg = f"{st.redact(file_url)}: bad {META_IMAGE_SHAPE.decode()} metadata"
            raise InputError(msg, source=file_url) from err
        if c != 3 or h != w:
            msg = f"{st.redact(file_url)}: expected square 3-channel stamps, got {c},{h},{w}"
            raise InputError(msg, source=file_url)
        return h
    if isinstance(field_type, pa.FixedSizeListType):
        side = math.isqrt(field_type.list_size // 3)
        if 3 * side * side == field_type.list_size:
            return side
    msg = f"{st.redact(file_url)}: cannot tell the stamp size (no {META_IMAGE_SHAPE.decode()})"
    raise InputError(msg, source=file_url)


def _preprocess_section(url: str, storage: StorageConfig | None) -> dict[str, Any] | None:
    meta = st.join(url, "_meta", "config.yaml")
    try:
        if not st.exists(meta, storage):
            return None
        data = yaml.safe_load(st.read_bytes(meta, storage)) or {}
    except (StorageError, yaml.YAMLError) as err:
        log.warning("%s: cannot read the preparing config: %s", st.redact(meta), err)
        return None
    section = data.get("preprocess")
    return dict(section) if isinstance(section, Mapping) else None
