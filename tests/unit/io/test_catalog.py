from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.table import Table

import ergo_ray
from ergo_ray.errors import CatalogSchemaError, InputError
from ergo_ray.io import catalog as C
from ergo_ray.io.user_catalog import read_user_catalog


def _rows():
    return [
        {
            "object_id": "a-p0",
            "root_id": "a",
            "domain": "tng100",
            "projection": np.int64(1),
            "redshift": 0.2,
            "log_mstar": 10.5,
            "file": "images/x.fits",
            "struct_n": 4.0,
            "i_mag": 19.0,
        },
        {
            "object_id": "b-p0",
            "root_id": "b",
            "domain": "tng100",
            "projection": 0,
            "redshift": 0.3,
            "log_mstar": float("nan"),
            "file": "images/y.fits",
            "struct_n": None,
            "i_mag": 20.0,
        },
    ]


def test_rows_to_table_types_and_order():
    table = C.rows_to_table(_rows())
    assert table.column_names == [
        "object_id",
        "root_id",
        "domain",
        "projection",
        "redshift",
        "log_mstar",
        "i_mag",
        "file",
        "struct_n",
    ]
    assert table.schema.field("projection").type == pa.int32()
    assert table.schema.field("i_mag").type == pa.float64()
    assert not table.schema.field("object_id").nullable
    assert table.column("struct_n").to_pylist() == [4.0, None]
    assert C.rows_to_table(_rows(), drop=("file",)).column_names[-1] == "struct_n"


def test_write_and_read_a_catalogue_folder(tmp_path):
    run = str(tmp_path / "run")
    for k, row in enumerate(_rows()):
        C.write_part(f"{run}/catalog/{C.part_name(k)}", C.rows_to_table([row]))
    table = C.read_catalog(run)
    assert table.column("object_id").to_pylist() == ["a-p0", "b-p0"]
    assert C.read_catalog(f"{run}/catalog").num_rows == 2
    assert C.read_catalog(f"{run}/catalog/part-00001.parquet").num_rows == 1
    assert C.read_catalog(run, columns=["object_id", "redshift"]).column_names == [
        "object_id",
        "redshift",
    ]
    meta = C.read_metadata(f"{run}/catalog/part-00000.parquet")
    assert meta == {
        "ergo_ray.version": ergo_ray.__version__,
        "ergo_ray.schema": "1",
        "ergo_ray.kind": "catalog",
    }
    assert C.part_name(3, 2) == "part-00003-002.parquet"


def test_missing_columns_are_listed_with_the_file(tmp_path):
    part = tmp_path / "catalog" / "part-00000.parquet"
    part.parent.mkdir()
    pq.write_table(pa.table({"object_id": ["a"], "root_id": ["a"]}), part)
    with pytest.raises(
        CatalogSchemaError,
        match=r"part-00000\.parquet: missing columns 'domain', "
        r"'projection', 'redshift'",
    ) as err:
        C.read_catalog(str(tmp_path))
    assert err.value.source.endswith("part-00000.parquet")
    pq.write_table(pa.table({"root_id": ["a"]}), part)
    with pytest.raises(CatalogSchemaError, match="missing column 'object_id'"):
        C.read_catalog(str(tmp_path), required=("object_id",))


def test_wrong_column_types(tmp_path):
    pq.write_table(
        pa.table(
            {
                "object_id": [1],
                "root_id": ["a"],
                "domain": ["d"],
                "projection": [0],
                "redshift": ["high"],
            }
        ),
        tmp_path / "c.parquet",
    )
    with pytest.raises(
        CatalogSchemaError,
        match="column 'object_id' has type int64, expected string; "
        "column 'redshift' has type string, expected double",
    ):
        C.read_catalog(str(tmp_path / "c.parquet"))


def test_no_catalogue(tmp_path):
    with pytest.raises(InputError, match="no catalogue found"):
        C.read_catalog(str(tmp_path))


def test_user_catalogues_csv_fits_parquet(tmp_path):
    (tmp_path / "u.csv").write_text(
        "object_id,ra,dec,redshift\n1001,150.1,2.2,0.12\n1002,150.2,2.3,0.3\n"
    )
    csv = read_user_catalog(str(tmp_path / "u.csv"), required=("ra", "dec"))
    assert csv.column("ra").to_pylist() == [150.1, 150.2]
    # object_id is a string in every ergo_ray table, whatever the file had
    assert csv.column("object_id").to_pylist() == ["1001", "1002"]
    t = Table(
        {
            "object_id": ["x1", "x2"],
            "ra": [1.0, 2.0],
            "dec": [3.0, 4.0],
            "vec": np.zeros((2, 3)),
        }
    )
    t.write(tmp_path / "u.fits")
    fits = read_user_catalog(str(tmp_path / "u.fits"), required=("ra",))
    assert fits.column("object_id").to_pylist() == ["x1", "x2"]
    assert "vec" not in fits.column_names and fits.column("dec").to_pylist() == [
        3.0,
        4.0,
    ]
    pq.write_table(pa.table({"object_id": ["p"], "ra": [5.0]}), tmp_path / "u.parquet")
    assert read_user_catalog(str(tmp_path / "u.parquet")).num_rows == 1
    with pytest.raises(CatalogSchemaError, match=r"u\.parquet: missing column 'dec'"):
        read_user_catalog(str(tmp_path / "u.parquet"), required=("ra", "dec"))
    (tmp_path / "u.xlsx").write_text("x")
    with pytest.raises(InputError, match="unknown catalogue type"):
        read_user_catalog(str(tmp_path / "u.xlsx"))
