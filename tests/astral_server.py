"""An Astral API (``../shared/reference/astral.md``) on 127.0.0.1 serving location proofs built from the example
responses in ``../shared/corpus/astral/``, paged like the repository's code: ``GET /api/v0/location-proofs`` with
``limit`` (capped at 100) and ``offset``, ordered by ``event_timestamp`` descending, answering
``{"data": [...], "pagination": {"total", "limit", "offset", "next"}}`` where ``next`` is a RELATIVE URL or null.
Optional: a bearer token it requires, and every ``fault_every``-th request answered 429 (``Retry-After: 0``).
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import json
import socket
import threading
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web


def rows_from_examples(corpus: Path, n: int) -> list[dict[str, Any]]:
    """``n`` rows varied from the example row: locations as GeoJSON text, as "lat,lng" text (parsed coordinates
    given), or missing (no geometry at all: such a proof cannot become an item)."""
    base = json.loads((corpus / "docs-v0-location-proof-single.json").read_text())
    start = datetime.datetime(2023, 9, 15, 12, 34, 56, tzinfo=datetime.UTC)
    rows = []
    for i in range(n):
        row = copy.deepcopy(base)
        lon, lat = -122.4194 + i * 0.01, 37.7749 - i * 0.005
        row["uid"] = "0x" + f"{i:064x}"
        when = start + datetime.timedelta(hours=i)
        row["event_timestamp"] = when.isoformat()  # "+00:00" offsets, as the service writes them
        row["timestamp"] = (when + datetime.timedelta(minutes=1)).isoformat()
        row["created_at"] = row["updated_at"] = (when + datetime.timedelta(minutes=2)).isoformat()
        row["memo"] = f"proof {i}"
        row["revoked"] = i % 10 == 9
        if i % 7 == 3:
            row["location_type"] = "lat-lng"
            row["location"] = f"{lat},{lon}"
            row["longitude"], row["latitude"] = lon, lat
        elif i % 11 == 5:
            row["location"] = None
            row["longitude"] = row["latitude"] = None
        else:
            row["location"] = json.dumps({"type": "Point", "coordinates": [lon, lat]})
            row["longitude"], row["latitude"] = lon, lat
        rows.append(row)
    rows.sort(key=lambda r: r["event_timestamp"], reverse=True)
    return rows


class AstralServer:
    def __init__(self, rows: list[dict[str, Any]], *, token: str | None = None, fault_every: int = 0) -> None:
        self.rows = rows
        self.token = token
        self.fault_every = fault_every
        self.requests: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.base}/api/v0/location-proofs"

    async def proofs(self, request: web.Request) -> web.Response:
        self.requests.append(str(request.rel_url))
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"error": "Unauthorized"}, status=401)
        if self.fault_every and len(self.requests) % self.fault_every == 0:
            return web.json_response({"error": "Too many requests"}, status=429, headers={"Retry-After": "0"})
        try:
            limit = min(100, int(request.query.get("limit", "20")))
            offset = int(request.query.get("offset", "0"))
        except ValueError:
            return web.json_response({"error": "limit and offset must be integers"}, status=400)
        page = self.rows[offset : offset + limit]
        nxt = None
        if offset + limit < len(self.rows):
            nxt = f"/api/v0/location-proofs?limit={limit}&offset={offset + limit}"
        body = {"data": page, "pagination": {"total": len(self.rows), "limit": limit, "offset": offset, "next": nxt}}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    def start(self) -> AstralServer:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_get("/api/v0/location-proofs", self.proofs)
            self._runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(self._runner.setup())
            loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
