"""A real STAC API peer on 127.0.0.1: PostgreSQL + PostGIS + pgstac, served by stac-fastapi-pgstac, fed by pypgstac.

``tests/peers/install.sh`` (run by ``make test``) installs the parts; this module starts a throwaway cluster in a
temporary folder, migrates it with ``pypgstac migrate``, starts uvicorn, and loads collections and items through
pypgstac's own ``Loader`` (in the peers' virtual environment). Facts: ``../shared/reference/pgstac.md``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
PEERS = Path(os.environ.get("STACBATCH_PEERS_DIR", ROOT / ".peers"))

# Runs inside the peers' venv: pypgstac's Python loader takes dicts as they are (its file reader rewrites escaped
# backslashes in NDJSON lines, which would change the items under test).
_LOADER = """
import sys, orjson
from pypgstac.db import PgstacDB
from pypgstac.load import Loader, Methods
def read(path):
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                yield orjson.loads(line)
with PgstacDB() as db:
    loader = Loader(db)
    loader.load_collections(read(sys.argv[1]), Methods.upsert)
    loader.load_items(read(sys.argv[2]), Methods.upsert)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    for initdb in reversed(found):
        version = Path(initdb).parts[-3]
        if Path(f"/usr/share/postgresql/{version}/extension/postgis.control").exists():
            return Path(initdb).parent
    return None


def missing() -> str | None:
    """Why the peer cannot start here, or None when everything it needs is installed."""
    if _pg_bin() is None:
        return "PostgreSQL with PostGIS is not installed (make peers)"
    if not (PEERS / "venv" / "bin" / "uvicorn").exists():
        return f"pypgstac / stac-fastapi-pgstac are not installed in {PEERS}/venv (make peers)"
    return None


class PgstacPeer:
    """Start with ``start()``, feed with ``load()``, talk to ``base``, end with ``stop()``."""

    def __init__(self, hydrate_in_api: bool = True) -> None:
        # USE_API_HYDRATE=true (hydration in the API's Python) pages ~3x faster than the server's default (hydration in
        # PostgreSQL); the default is what most deployments run, so the benchmarks measure both.
        self.hydrate_in_api = hydrate_in_api
        self.dir = Path(tempfile.mkdtemp(prefix="stacbatch-pgstac-"))
        self.pg_port = _free_port()
        self.api_port = _free_port()
        self.base = f"http://127.0.0.1:{self.api_port}"
        self._api: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._bin = _pg_bin()
        self._as_postgres = os.geteuid() == 0  # initdb refuses to run as root

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PGHOST": "127.0.0.1",
            "PGPORT": str(self.pg_port),
            "PGUSER": "postgres",
            "PGDATABASE": "stac",
            "PGPASSWORD": "unused",  # stac-fastapi-pgstac requires one even under trust auth
        }

    def _pg(self, *cmd: str) -> None:
        assert self._bin is not None
        argv = [str(self._bin / cmd[0]), *cmd[1:]]
        if self._as_postgres:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        subprocess.run(argv, check=True, capture_output=True, env=self.env)

    def start(self) -> PgstacPeer:
        why = missing()
        if why:
            raise RuntimeError(why)
        os.chmod(self.dir, 0o777)  # the postgres OS user writes the cluster here
        data = str(self.dir / "data")
        self._pg("initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8")
        opts = f"-p {self.pg_port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"
        self._pg("pg_ctl", "-D", data, "-l", str(self.dir / "postgres.log"), "-w", "-o", opts, "start")
        self._pg("createdb", "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "postgres", "stac")
        venv = PEERS / "venv" / "bin"
        subprocess.run([str(venv / "pypgstac"), "migrate"], check=True, capture_output=True, env=self.env)
        self._log = open(self.dir / "api.log", "wb")  # noqa: SIM115 - lives as long as the server
        self._api = subprocess.Popen(
            [
                *(str(venv / "uvicorn"), "stac_fastapi.pgstac.app:create_app", "--factory"),
                *("--host", "127.0.0.1", "--port", str(self.api_port), "--log-level", "warning"),
            ],
            env={**self.env, "USE_API_HYDRATE": "true" if self.hydrate_in_api else "false"},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{self.base}/_mgmt/ping", timeout=2):
                    return self
            except OSError:
                if self._api.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"stac-fastapi-pgstac did not start: {self.dir / 'api.log'}") from None
                time.sleep(0.2)

    def load(self, collections: Iterable[dict[str, Any]], items: Iterable[dict[str, Any]]) -> None:
        """Load through pypgstac (upsert), collections first: pgstac needs an item's collection before the item."""
        cpath, ipath = self.dir / "collections.ndjson", self.dir / "items.ndjson"
        for path, docs in ((cpath, collections), (ipath, items)):
            with open(path, "wb") as f:
                for doc in docs:
                    f.write(orjson.dumps(doc) + b"\n")
        py = str(PEERS / "venv" / "bin" / "python")
        done = subprocess.run([py, "-c", _LOADER, str(cpath), str(ipath)], capture_output=True, env=self.env)
        if done.returncode:
            raise RuntimeError("pypgstac load failed: " + done.stderr.decode(errors="replace")[-2000:])

    def stop(self) -> None:
        if self._api is not None and self._api.poll() is None:
            self._api.terminate()
            try:
                self._api.wait(10)
            except subprocess.TimeoutExpired:
                self._api.kill()
        if self._log is not None:
            self._log.close()
        data = self.dir / "data"
        if (data / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.CalledProcessError):
                self._pg("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)
