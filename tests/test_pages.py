"""Reading chosen rows page by page (stage._pages, kernel take_chunk / parquet_pages / plain_take): the same values
as pyarrow for every layout, the kernel's own LZ4 decoder against pyarrow's, and malformed input refused."""

from __future__ import annotations

import contextlib
import random
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import needs_kernel, optional_kernel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stacbatch
from stacbatch.stage._files import PAGE_BATCH_ROWS, PAGE_BYTES, _codecs
from stacbatch.stage._pages import take_rows

_kernel = optional_kernel()
FS = fsspec.filesystem("file")


def _table(n: int, seed: int = 0) -> pa.Table:
    rng = random.Random(seed)
    texts = ["{" + '"k":"' + "x" * rng.randrange(0, 3000) + f'","n":{i}' + "}" for i in range(n)]
    return pa.table(
        {
            "id": pa.array([f"id-{i:06d}" for i in range(n)], pa.string()),
            "item": pa.array(texts, pa.json_(pa.string())),
            "geometry": pa.array([None if i % 7 == 3 else bytes([i % 256]) * (i % 50) for i in range(n)], pa.binary()),
            "datetime": pa.array([None if i % 5 == 0 else i * 1_000_000 for i in range(n)], pa.timestamp("us", "UTC")),
            "score": pa.array([float(i) / 3 for i in range(n)], pa.float64()),
            "label": pa.array(["a", "b", "c", None][i % 4] for i in range(n)),
            "bbox": pa.array(
                [None if i % 9 == 0 else {"xmin": i, "ymin": 0.0, "xmax": i + 1.0, "ymax": 1.0} for i in range(n)],
                pa.struct([(k, pa.float64()) for k in ("xmin", "ymin", "xmax", "ymax")]),
            ),
        },
        schema=pa.schema(
            [
                pa.field("id", pa.string(), nullable=False),
                pa.field("item", pa.json_(pa.string()), nullable=False),
                pa.field("geometry", pa.binary()),
                pa.field("datetime", pa.timestamp("us", "UTC")),
                pa.field("score", pa.float64(), nullable=False),
                pa.field("label", pa.string()),
                pa.field("bbox", pa.struct([(k, pa.float64()) for k in ("xmin", "ymin", "xmax", "ymax")])),
            ]
        ),
    )


LAYOUTS: dict[str, dict[str, Any]] = {
    # as stage files are written: LZ4 item column, small pages
    "stage": {
        "compression": _codecs(_table(1).schema)[0],
        "data_page_size": PAGE_BYTES,
        "write_batch_size": PAGE_BATCH_ROWS,
    },
    "zstd": {"compression": "zstd", "use_dictionary": False},
    "uncompressed-small-pages": {"compression": "none", "data_page_size": 4096, "write_batch_size": 4},
    "snappy-dictionary": {"compression": "snappy", "use_dictionary": True},
    "v2-pages": {"compression": "lz4", "data_page_version": "2.0"},
}
COLUMNS = ["id", "item", "geometry", "datetime", "score", "label", "bbox"]


def _expected(table: pa.Table, column: str, rows: np.ndarray) -> pa.Array:
    col = table[column].combine_chunks()
    if isinstance(col.type, pa.BaseExtensionType):
        col = col.storage
    return col.take(pa.array(rows))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, pa.Table]]:
    base = tmp_path_factory.mktemp("pages")
    table = _table(700)
    out = {}
    for name, kw in LAYOUTS.items():
        path = str(base / f"{name}.parquet")
        pq.write_table(table, path, row_group_size=300, **kw)
        out[name] = (path, table)
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layout=st.sampled_from(sorted(LAYOUTS)), picks=st.sets(st.integers(0, 699), max_size=60))
def test_take_rows_gives_what_pyarrow_gives(
    files: dict[str, tuple[str, pa.Table]], layout: str, picks: set[int]
) -> None:
    path, table = files[layout]
    rows = np.array(sorted(picks), np.int64)
    got = take_rows(FS, path, COLUMNS, rows)
    for c in COLUMNS:
        got[c].validate(full=True)
        assert got[c].equals(_expected(table, c, rows).cast(got[c].type)), (layout, c)


def test_every_row_and_row_group_edges(files: dict[str, tuple[str, pa.Table]]) -> None:
    for name, (path, table) in files.items():
        for rows in (np.arange(700), np.array([0, 299, 300, 599, 600, 699]), np.array([], np.int64)):
            got = take_rows(FS, path, COLUMNS, rows.astype(np.int64))
            for c in COLUMNS:
                assert got[c].equals(_expected(table, c, rows).cast(got[c].type)), (name, c)


def test_rows_beyond_the_file_are_refused(files: dict[str, tuple[str, pa.Table]]) -> None:
    path, _ = files["stage"]
    with pytest.raises(IndexError):
        take_rows(FS, path, ["item"], np.array([700], np.int64))


@needs_kernel
def test_a_stage_file_takes_the_kernel_path(tmp_path: Path) -> None:
    """Stage files are laid out for the kernel: LZ4 item pages of a few items each."""
    from helpers import item, write_ndjson

    src = write_ndjson(
        tmp_path / "in.ndjson",
        [item(f"i{n:04d}", properties={"datetime": "2020-01-01T00:00:00Z", "n": n}) for n in range(400)],
    )
    stage = stacbatch.load_to_stage(str(tmp_path / "s"), [str(src)], workers=1)
    path = stacbatch.open_stage(str(tmp_path / "s")).file_paths()[0]
    md = pq.ParquetFile(path).metadata
    leaves = [md.schema.column(i).path for i in range(md.num_columns)]
    col = md.row_group(0).column(leaves.index("item"))
    assert col.compression == "LZ4" and not col.has_dictionary_page
    with open(path, "rb") as f:
        f.seek(col.data_page_offset)
        chunk = f.read(col.total_compressed_size)
    pages = np.frombuffer(_kernel.parquet_pages(chunk), np.int64).reshape(-1, 7)
    assert len(pages) > 1 and (pages[:, 5] == 0).all() and (pages[:, 6] == 0).all()
    assert pages[:, 1].sum() == md.row_group(0).num_rows
    rows = np.array([1, 2, 77, md.row_group(0).num_rows - 1], np.int64)
    got = _kernel.take_chunk(chunk, 1, rows.tobytes())
    assert got is not None
    off, data = got
    texts = pa.Array.from_buffers(pa.large_string(), len(rows), [None, pa.py_buffer(off), pa.py_buffer(data)])
    want = pq.read_table(path, columns=["item"])["item"].combine_chunks().storage.take(pa.array(rows))
    assert texts.to_pylist() == want.to_pylist()
    assert stage.staged == 400


@needs_kernel
def test_kernel_lz4_matches_pyarrow_and_survives_corruption() -> None:
    rng = random.Random(7)
    codec = pa.Codec("lz4_raw")
    for n in range(60):
        # JSON-like text with repeats at every distance (overlapping and long matches), and incompressible runs
        parts = [rng.choice(['"href":"https://a/', "aaaa", "ab" * rng.randrange(1, 40), "{}", str(rng.random())])]
        parts += [bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40))).hex() for _ in range(3)]
        raw = ("".join(parts) * rng.randrange(1, 30)).encode()
        page = len(raw).to_bytes(4, "little") + raw  # one PLAIN value
        body = codec.compress(page, asbytes=True)
        chunk = _page_header(len(page), len(body)) + body
        got = _kernel.take_chunk(chunk, 1, np.array([0], np.int64).tobytes())
        assert got is not None and bytes(got[1]) == raw, n
        for _ in range(20):  # corrupted blocks: an error or some bytes, never a crash
            bad = bytearray(chunk)
            for _ in range(rng.randrange(1, 4)):
                bad[rng.randrange(len(bad))] = rng.randrange(256)
            with contextlib.suppress(ValueError):
                _kernel.take_chunk(bytes(bad), 1, np.array([0], np.int64).tobytes())


def _page_header(raw: int, size: int, values: int = 1) -> bytes:
    """A Thrift compact PageHeader: DATA_PAGE, sizes, DataPageHeader(num_values, encoding PLAIN, RLE, RLE)."""

    def zz(v: int) -> bytes:
        v = (v << 1) ^ (v >> 63)
        out = b""
        while True:
            b, v = v & 0x7F, v >> 7
            out += bytes([b | (0x80 if v else 0)])
            if not v:
                return out

    head = b"\x15" + zz(0) + b"\x15" + zz(raw) + b"\x15" + zz(size)
    data = b"\x15" + zz(values) + b"\x15" + zz(0) + b"\x15" + zz(3) + b"\x15" + zz(3) + b"\x00"
    return head + b"\x2c" + data + b"\x00"


@needs_kernel
def test_malformed_headers_are_value_errors() -> None:
    for junk in (b"\x15", b"\xff" * 20, _page_header(10, 50) + b"short"):
        with pytest.raises(ValueError):
            _kernel.parquet_pages(junk)
    with pytest.raises(ValueError):  # rows out of order
        _kernel.plain_take(b"\x01\x00\x00\x00a\x01\x00\x00\x00b", np.array([1, 0], np.int64).tobytes())
    row = np.array([0], np.int64).tobytes()
    body = b"\x50\x01\x00\x00\x00a"  # an LZ4 block: one run of 5 literals, the PLAIN value "a"
    page = _page_header(5, len(body)) + body
    assert bytes(_kernel.take_chunk(page, 1, row)[1]) == b"a"
    assert bytes(_kernel.take_chunk(page, 1, memoryview(b"\0" + row)[1:])[1]) == b"a"  # rows at an odd address
    with pytest.raises(ValueError):  # an uncompressed size no LZ4 block this small reaches: refused, not allocated
        _kernel.take_chunk(_page_header(2**62, len(body)) + body, 1, row)
    negative = _page_header(5, len(body), values=-1) + body
    past = _page_header(5, len(body), values=2**63 - 1) + body + page  # counts of values past int64
    for chunk in (negative, past):
        with pytest.raises(ValueError):
            _kernel.parquet_pages(chunk)
        with pytest.raises(ValueError):
            _kernel.take_chunk(chunk, 1, np.array([0, 2**63 - 1], np.int64).tobytes())


def test_a_remote_filesystem_reads_through_file_objects(files: dict[str, tuple[str, pa.Table]]) -> None:
    """Not memory-mapped (S3 and the like): column chunks are read with seek and read on fsspec file objects."""
    mem = fsspec.filesystem("memory")
    path, table = files["stage"]
    with open(path, "rb") as f:
        mem.pipe("/pages/stage.parquet", f.read())
    rows = np.array([0, 5, 299, 300, 650], np.int64)
    got = take_rows(mem, "/pages/stage.parquet", COLUMNS, rows)
    for c in COLUMNS:
        assert got[c].equals(_expected(table, c, rows).cast(got[c].type)), c
