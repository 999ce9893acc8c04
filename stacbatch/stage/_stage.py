"""A stage: open it, lock it for writing, query it with DuckDB, read it as Arrow or Polars."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from stacbatch.engine import _fs, _json, _sql
from stacbatch.engine._layout import AUDIT, CATALOGS, COLLECTIONS, ITEMS, LOCK, MANIFEST, RUNS, TMP, TOMBSTONES
from stacbatch.errors import StageError
from stacbatch.stage._manifest import Manifest, read_manifest

if TYPE_CHECKING:
    import duckdb
    import polars as pl
    import pyarrow as pa


class Stage:
    """A snapshot of a stage: the manifest as it was when opened, and DuckDB views over exactly its files.

    Writers in other processes do not change what a snapshot reads: the files a write replaces are kept for the
    ``retain_replaced_seconds`` setting (15 minutes by default) after it. ``refresh()`` moves to the newest version.

    >>> stage = open_stage("my-stage")
    >>> stage.items.filter("collection = 'HLSL30_2.0'").to_arrow_table()
    """

    def __init__(self, path: str, fs: Any, root: str, manifest: Manifest) -> None:
        self.path = path
        self.fs = fs
        self.root = root
        self.manifest = manifest
        self._con: duckdb.DuckDBPyConnection | None = None

    # -- opening -------------------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str) -> Stage:
        fs, root = _fs.filesystem(path)
        manifest = read_manifest(fs, root)
        if manifest is None:
            if fs.exists(root):
                raise StageError(
                    f"{path}: not a stage (no {MANIFEST}); create one with `stacbatch load ... --stage {path}`"
                )
            raise StageError(f"{path}: no such stage; create one with `stacbatch load SOURCE --stage {path}`")
        return cls(path, fs, root, manifest)

    @classmethod
    def open_or_new(cls, path: str) -> Stage:
        fs, root = _fs.filesystem(path)
        manifest = read_manifest(fs, root)
        if manifest is None:
            if fs.exists(root) and fs.isfile(root):
                raise StageError(f"{path}: is a file, not a stage folder")
            # A folder holding only stacbatch's own entries is a stage whose first load died before committing.
            own = (LOCK, ITEMS, COLLECTIONS, RUNS, TMP, AUDIT, TOMBSTONES, CATALOGS)
            if fs.exists(root) and [
                p for p in fs.ls(root, detail=False) if p.rstrip("/").rsplit("/", 1)[-1] not in own
            ]:
                raise StageError(f"{path}: folder exists, is not empty and holds no stage; choose another --stage")
            manifest = Manifest()
        return cls(path, fs, root, manifest)

    @contextlib.contextmanager
    def write_lock(self) -> Iterator[None]:
        """One writer at a time (local stages: an advisory ``flock``; released by the OS if the process dies)."""
        from stacbatch.stage._cleanup import after_crash

        if not _fs.is_local(self.fs):  # no lock on object stores: one writer at a time is the user's to keep
            after_crash(self.fs, self.root, read_manifest(self.fs, self.root))
            yield
            return
        import fcntl

        os.makedirs(self.root, exist_ok=True)
        fd = os.open(os.path.join(self.root, LOCK), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StageError(
                    f"{self.path}: another stacbatch process is writing to this stage; wait for it to finish"
                ) from None
            after_crash(self.fs, self.root, read_manifest(self.fs, self.root))  # what a killed writer left
            yield
        finally:
            os.close(fd)

    @property
    def version(self) -> int:
        """The stage version this snapshot reads."""
        return self.manifest.version

    def refresh(self) -> Stage:
        """Read the newest version (views and relations made before this call are dropped with the connection)."""
        manifest = read_manifest(self.fs, self.root)
        if manifest is None:
            raise StageError(f"{self.path}: the stage is gone (no {MANIFEST})")
        self.close()
        self.manifest = manifest
        return self

    def newer_version(self) -> int | None:
        """The stage's current version when a writer has committed since this snapshot was opened, else None."""
        try:
            current = read_manifest(self.fs, self.root)
        except StageError:
            return None
        return current.version if current is not None and current.version != self.version else None

    # -- querying ------------------------------------------------------------------------------------------
    def file_paths(self, collections: list[str] | None = None) -> list[str]:
        files = self.manifest.files
        if collections is not None:
            wanted = set(collections)
            files = [f for f in files if f["collection"] in wanted]
        return [_fs.full_path(self.fs, _fs.join(self.root, f["path"])) for f in files]

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with views ``items`` and table ``collections`` over this snapshot."""
        if self._con is None:
            self._con = self._connect()
        return self._con

    def _view(self, con: duckdb.DuckDBPyConnection, view: str, collections: list[str] | None) -> None:
        from stacbatch.stage._view import empty_select, items_sql

        def full(rel: str) -> str:
            return _fs.full_path(self.fs, _fs.join(self.root, rel))

        ddl, _names = items_sql(self.manifest, view, collections, full)
        if not ddl.rstrip().endswith("AS"):
            con.execute(ddl)
            return
        con.execute(_sql.load("empty_items"))
        empty = empty_select("_empty_items")
        con.execute(f"CREATE OR REPLACE VIEW {_sql.ident(view)} AS\n{empty}")

    def items_view(self, collections: list[str]) -> str:
        """Name of a view shaped like ``items`` over only these collections' files (no other file is opened): the
        same columns and types as ``items``, so a predicate means the same over both."""
        view = "_items_" + str(abs(hash(tuple(sorted(collections)))))
        self._view(self.connection, view, collections)
        return view

    def _connect(self) -> duckdb.DuckDBPyConnection:
        # stderr belongs to stacbatch's own progress and messages.
        con = _sql.connect(self.fs)
        self._view(con, "items", None)
        con.execute(_sql.load("collections_table"))
        con.execute(_sql.load("audit_tables"))
        for view, entries in (("audit", self.manifest.audit), ("tombstones", self.manifest.tombstones)):
            paths = [_fs.full_path(self.fs, _fs.join(self.root, e["path"])) for e in entries]
            source = (
                f"read_parquet({_sql.literal_list(paths)}, hive_partitioning = false)" if paths else f"_empty_{view}"
            )
            # Ordered as written: by run, then row order within the run.
            con.execute(f"CREATE OR REPLACE VIEW {_sql.ident(view)} AS SELECT * FROM {source}")
        verdicts = self.manifest.validation
        if verdicts:
            path = _fs.full_path(self.fs, _fs.join(self.root, verdicts["path"]))
            source = f"read_parquet({_sql.literal(path)})"
        else:
            con.execute(_sql.load("empty_validation"))
            source = "_empty_validation"
        con.execute(f"CREATE OR REPLACE VIEW validation AS SELECT * FROM {source}")
        rows = []
        counts = {c: sum(f["rows"] for f in fs) for c, fs in self.manifest.files_by_collection().items()}
        for cid, meta in sorted(self.manifest.collections.items()):
            doc = self.collection_json(cid)
            rows.append(
                [
                    cid,
                    counts.get(cid, 0),
                    meta.get("partitioning") or "none",  # none chosen yet: no items (its JSON only)
                    _json.dumps(doc).decode() if doc is not None else None,
                ]
            )
        if rows:
            con.executemany("INSERT INTO collections VALUES (?, ?, ?, ?)", rows)
        return con

    @property
    def items(self) -> duckdb.DuckDBPyRelation:
        return self.connection.table("items")

    @property
    def collections(self) -> duckdb.DuckDBPyRelation:
        return self.connection.table("collections")

    @property
    def validation(self) -> duckdb.DuckDBPyRelation:
        """The last validation run's verdicts: run_id, kind, collection, id, valid, rule, path, message, source."""
        return self.connection.table("validation")

    @property
    def audit(self) -> duckdb.DuckDBPyRelation:
        """Every change by every run: run_id, time, operation, collection, id, paths, hash_before, hash_after."""
        return self.connection.table("audit")

    @property
    def tombstones(self) -> duckdb.DuckDBPyRelation:
        """Deleted items: collection, id, content_hash (the deleted version), deleted (time), run_id."""
        return self.connection.table("tombstones")

    def sql(self, query: str, params: list[Any] | None = None) -> duckdb.DuckDBPyRelation:
        return self.connection.sql(query, params=params)

    def to_arrow(self, where: str | None = None) -> pa.Table:
        rel = self.items if where is None else self.items.filter(where)
        return rel.to_arrow_table()

    def to_polars(self, where: str | None = None) -> pl.DataFrame:
        import polars as pl

        rel = self.items if where is None else self.items.filter(where)
        df = rel.pl()
        assert isinstance(df, pl.DataFrame)
        return df

    def scan(self, collections: list[str] | None = None) -> pl.LazyFrame:
        """A Polars LazyFrame over the ``items`` view (or only these collections' files): the core columns and
        the typed property columns under their STAC names. Polars' selections and filters reach the Parquet
        reader, so ``scan().filter(pl.col("eo:cloud_cover") < 10).select("id")`` reads two columns."""
        import polars as pl

        view = "items" if collections is None else self.items_view(collections)
        lf = self.connection.table(view).pl(lazy=True)
        assert isinstance(lf, pl.LazyFrame)
        return lf

    def collection_json(self, collection: str) -> dict[str, Any] | None:
        rel = self.manifest.collections.get(collection, {}).get("json")
        if not rel:
            return None
        with self.fs.open(_fs.join(self.root, rel), "rb") as f:
            doc: dict[str, Any] = _json.loads(f.read())  # integers beyond 64 bits stay exact
        return doc

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def __enter__(self) -> Stage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        m = self.manifest
        return f"<Stage {self.path!r} v{m.version}: {m.item_count()} items in {len(m.collections)} collections>"


def open_stage(path: str | os.PathLike[str]) -> Stage:
    """Open a stage for reading: ``open_stage(p).items`` is a DuckDB relation; ``.to_arrow()``, ``.to_polars()``."""
    return Stage.open(os.fspath(path))
