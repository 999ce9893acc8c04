"""The partition writer: gathers the rows workers spilled, partition by partition, into sorted stage files, and
collects the files workers wrote themselves (``_route.Placement``)."""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from stacbatch.engine._pool import Workers, release_freed_memory
from stacbatch.errors import StageError
from stacbatch.kernel._rows import STAGE_SCHEMA
from stacbatch.kernel._scan import drop_spare
from stacbatch.stage._files import Written, write_sorted
from stacbatch.stage._parse import Spill, write_parts
from stacbatch.stage._route import Part, Placement, Router

#: Item text buffered before the buffer is split into per-partition spills (bounds peak memory).
BUFFER_CAP_BYTES = 64 * 1024 * 1024


class PartitionWriter:
    """Routes stage-schema rows to partitions through Arrow IPC spill files, then writes each partition as sorted,
    bounded GeoParquet files.

    Rows arrive as spill files already (``add_parts``: worker processes route and spill their own rows) or as
    batches (``add``: buffered, then routed and spilled here). A spill file is one partition's rows in Arrow IPC
    (memory-mapped later, never Parquet-encoded). ``finish`` sorts each partition by its
    keys only and gathers the output files chunk by chunk, written once, compressed once. Memory is bounded by the
    buffer plus one output file per writer thread, whatever the input order or size.
    """

    def __init__(
        self,
        fs: Any,
        root: str,
        run_id: str,
        settings: dict[str, Any],
        partitioning: dict[str, str],
        spill_dir: str,
        *,
        audit_keys: bool = False,
        plans: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.fs = fs
        #: collection -> its queryable columns plan (``_columns.py``), as the run found it
        self.plans = plans or {}
        #: leave the written rows' audit keys (``audit_keys``), for the insert audit of a first load
        self.want_audit_keys = audit_keys
        self.root = root
        self.run_id = run_id
        self.settings = settings
        #: collection -> scheme; collections new to the stage are provisional until ``finish``
        self.partitioning = dict(partitioning)
        self.new_schemes: dict[str, str] = {}
        self.spill_dir = spill_dir
        self._spills: dict[tuple[str, str | None], list[Spill]] = {}
        #: stage files workers wrote themselves, per collection
        self._written: list[tuple[str, Written]] = []
        self._batches: list[pa.RecordBatch] = []
        self._rows: dict[str, int] = {}
        self._buffered = 0
        self._n = 0
        #: per collection, the id hashes of the rows ``finish`` wrote (None: unknown, no kernel)
        self.id_hashes: dict[str, list[np.ndarray]] | None = {}
        #: Arrow files of the audit keys of the rows ``finish`` wrote
        self.audit_files: list[str] = []
        #: partition jobs started by ``write_early``, and the thread they run on
        self._early: list[tuple[PartitionJob, Future[Any]]] = []
        #: collections ``write_early`` took: a row for one of them now would be lost (its files are written)
        self._closed: set[str] = set()
        self._early_pool: ThreadPoolExecutor | None = None

    def router(self) -> Router:
        return Router(dict(self.partitioning), self.settings["time_bucket"])

    def placement(self) -> Placement:
        """For workers: where to put their routed rows (see ``Placement``)."""
        return Placement(
            self.router(),
            self.fs,
            self.root,
            self.run_id,
            self.settings,
            self.spill_dir,
            self.want_audit_keys,
            self.plans,
        )

    def add(self, batch: pa.RecordBatch) -> None:
        """Rows not routed yet (merge): buffered, then routed and spilled here."""
        self._batches.append(batch)
        self._buffered += batch.column(7).nbytes
        if self._buffered >= BUFFER_CAP_BYTES:
            self._spill()

    def _scheme(self, collection: str) -> str:
        scheme = self.partitioning.get(collection)
        if scheme is None:
            scheme = self.settings["time_bucket"]
            self.partitioning[collection] = scheme
            self.new_schemes[collection] = scheme
        return scheme

    def _spill(self) -> None:
        if not self._batches:
            return
        # Contiguous first: Arrow's gather over many chunks is ~8x slower than combining, then gathering.
        table = pa.Table.from_batches(self._batches, schema=STAGE_SCHEMA).combine_chunks()
        self._batches = []
        self._buffered = 0
        self._n += 1
        self.add_parts(write_parts(*self.router().route(table), self.spill_dir, f"w{self._n:07d}"))

    def add_parts(self, parts: list[Part]) -> None:
        """Adopt rows a worker placed (``Placement``): spilled by ``_parse.write_parts``, or written as stage files
        already; (collection, bucket, ``Spill`` or ``Written``)."""
        for collection, bucket, part in parts:
            if collection in self._closed:
                raise StageError(f"rows of collection {collection!r} came after it was written (a bug: report it)")
            self._scheme(collection)
            if isinstance(part, Written):
                self._written.append((collection, part))
            else:
                self._spills.setdefault((collection, bucket), []).append(part)
            self._rows[collection] = self._rows.get(collection, 0) + part.rows

    def write_early(self, collections: tuple[str, ...] | list[str]) -> None:
        """Start writing these collections' partitions now, on a thread, while the load goes on: the caller knows
        that no more of their rows will come (an API source whose every query for them has ended). ``finish``
        collects the results."""
        self._spill()
        self._closed.update(collections)
        keys = [k for k in self._spills if k[0] in self._closed]
        if not keys:
            return
        jobs = self._jobs(keys)
        if self._early_pool is None:
            # one thread: fetching and parsing go on meanwhile on the same cores
            self._early_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stacbatch-early-writer")
        for job in jobs:
            self._early.append((job, self._early_pool.submit(write_partition, job)))

    def _jobs(self, keys: list[tuple[str, str | None]]) -> list[PartitionJob]:
        """The partition jobs for these (collection, bucket) spill groups, which leave the writer. New collections
        with fewer than ``time_bucket_min_items`` rows in this load are flattened into a single partition."""
        spilled = {k: self._spills.pop(k) for k in keys}
        small = {c for c, _b in spilled if c in self.new_schemes}
        small = {c for c in small if self._rows.get(c, 0) < self.settings["time_bucket_min_items"]}
        for c in small:
            self.new_schemes[c] = self.partitioning[c] = "none"
        jobs: dict[tuple[str, str | None], list[Spill]] = {}
        for (collection, bucket), spills in spilled.items():
            jobs.setdefault((collection, None if collection in small else bucket), []).extend(spills)
        # A partition is sorted whole when it fits a few files; a larger one (a million items in one year) is
        # sorted in groups of spill files of about a file's size each, so memory stays bounded whatever its size
        # (its files then overlap in time; each is still sorted).
        todo = [
            PartitionJob(
                self.fs,
                self.root,
                self.run_id,
                self.settings,
                c,
                self.partitioning[c],
                b,
                g,
                part,
                self.spill_dir if self.want_audit_keys else None,
                self.plans.get(c),
            )
            for (c, b), spills in sorted(jobs.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))
            for g, part in enumerate(self._groups(spills))
        ]
        # Largest first, so that the writers finish together rather than one waiting on a big partition.
        todo.sort(key=lambda job: -sum(s.nbytes for s in job.spills))
        return todo

    def finish(self, workers: Workers | None = None) -> list[dict[str, Any]]:
        """Write every partition (on ``workers`` when given, else on two threads) and collect those started by
        ``write_early``; return the manifest entries."""
        self._spill()
        todo = self._jobs(list(self._spills))
        early, self._early = self._early, []
        with contextlib.ExitStack() as stack:
            if self._early_pool is not None:
                stack.callback(self._early_pool.shutdown)
                self._early_pool = None
            if workers is not None and workers.parallel:
                # processes: the GIL and one address space's page-fault locks kept two threads at ~1.4x one
                done: Iterator[Any] = workers.ordered_map(write_partition, todo)
            else:
                # pyarrow sorts, gathers and compresses without the GIL: two threads use both cores.
                pool = stack.enter_context(ThreadPoolExecutor(max_workers=2, thread_name_prefix="stacbatch-writer"))
                done = pool.map(write_partition, todo)
            # early jobs first: their spill files (shared with other collections' rows) go once all readers are done
            every = [job for job, _f in early] + todo
            results = list(_unlinking_spent_spills(every, itertools.chain((f.result() for _j, f in early), done)))
        written = [*self._written, *((job.collection, w) for job, w in zip(every, results, strict=True))]
        self._written = []
        for collection, w in written:
            if w.keys is None or self.id_hashes is None:
                self.id_hashes = None
            else:
                self.id_hashes.setdefault(collection, []).append(w.keys)
            if w.audit is not None:
                self.audit_files.append(w.audit)
        return sorted((e for _c, w in written for e in w.entries), key=lambda e: e["path"])

    def audit_keys(self) -> pa.Table:
        """(collection, id, content_hash) of every row ``finish`` wrote, file by file in row order (read into
        memory: the spill folder goes before the audit is written)."""
        tables = [STAGE_SCHEMA.empty_table().select(["collection", "id", "content_hash"])]
        for path in self.audit_files:
            with pa.OSFile(path, "rb") as f:
                tables.append(pa.ipc.open_file(f).read_all())
        return pa.concat_tables(tables)

    def ids_distinct(self) -> bool:
        """True when no id was written twice within a collection by ``finish`` (proven by distinct hashes);
        False when that may have happened (or is unknown)."""
        if self.id_hashes is None:
            return False
        for parts in self.id_hashes.values():
            keys = np.sort(np.concatenate(parts))
            if len(keys) > 1 and bool((keys[1:] == keys[:-1]).any()):
                return False
        return True

    def _groups(self, spills: list[Spill]) -> list[list[Spill]]:
        limit = int(self.settings["file_max_bytes"])
        if sum(s.nbytes for s in spills) <= 4 * limit:
            return [spills]
        out: list[list[Spill]] = [[]]
        total = 0
        for spill in spills:
            if out[-1] and total + spill.nbytes > limit:
                out.append([])
                total = 0
            out[-1].append(spill)
            total += spill.nbytes
        return out


@dataclass(frozen=True)
class PartitionJob:
    """One output group of one partition: picklable, so that worker processes can write it."""

    fs: Any
    root: str
    run_id: str
    settings: dict[str, Any]
    collection: str
    scheme: str
    bucket: str | None
    group: int
    spills: list[Spill]
    #: where to leave the written rows' (collection, id, content_hash), in file order, for the audit of a first
    #: load (None: not wanted)
    audit_dir: str | None = None
    #: the collection's queryable columns plan
    plan: dict[str, Any] | None = None


def write_partition(job: PartitionJob) -> Written:
    """Sort a partition's spilled rows and write them as stage files (``_files.write_sorted``)."""
    drop_spare()
    release_freed_memory()  # a parse worker's kept heap: this phase allocates through Arrow's allocator instead
    table = _read_spills(job.spills)
    if table["item"].nbytes <= job.settings["file_max_bytes"]:
        # Fits one file: gather from contiguous memory (much faster); bigger partitions stay memory-mapped.
        # The mapped spill pages are released right away (they would count twice while the files are written).
        table = table.combine_chunks()
    where = (job.collection, job.scheme, job.bucket)
    return write_sorted(
        job.fs, job.root, job.run_id, job.settings, where, table, f"{job.group:03d}", job.audit_dir, job.plan
    )


def _unlinking_spent_spills[R](todo: list[PartitionJob], done: Iterator[R]) -> Iterator[R]:
    """Pass results through, deleting each spill file once every job that reads it has finished.

    Deleting gigabytes of spills at the end took seconds (the kernel drops every cached page of a file as it
    goes); here it happens while the writers work and this process would only wait.
    """
    readers: dict[str, int] = {}
    for job in todo:
        for path in {s.path for s in job.spills}:
            readers[path] = readers.get(path, 0) + 1
    for job, result in zip(todo, done, strict=True):
        yield result
        for path in {s.path for s in job.spills}:
            readers[path] -= 1
            if not readers[path]:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)


def _read_spills(spills: list[Spill]) -> pa.Table:
    """The spilled rows, memory-mapped (only the pages of these batches are read)."""
    batches = []
    for spill in spills:
        reader = pa.ipc.open_file(pa.memory_map(spill.path))
        batches += [reader.get_batch(i) for i in range(spill.first, spill.first + spill.count)]
    return pa.Table.from_batches(batches, schema=STAGE_SCHEMA)
