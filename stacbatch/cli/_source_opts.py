"""The STAC API source options, defined once and shared by ``load``, ``diff``, ``merge`` and ``discover``.

``with_source_options`` adds them to a command's parameters (typer reads the signature) and hands the command one
``SourceArgs`` instead; ``SourceArgs.api_options`` checks the values and makes the ``ApiOptions``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import typer

from stacbatch.errors import InputError

if TYPE_CHECKING:
    from stacbatch.api import ApiOptions

_MB = 1024 * 1024


@dataclass
class SourceArgs:
    collection: list[str] = field(default_factory=list)
    bbox: str | None = None
    datetime: str | None = None
    ids: str | None = None
    max_items: int | None = None
    limit: int | None = None
    method: str = "auto"
    windows: int | None = None
    window_pages: int = 10
    max_pages: int = 100_000
    concurrency: int = 8
    rate_limit: float | None = None
    max_retries: int = 5
    timeout: float = 60.0
    header: list[str] = field(default_factory=list)
    header_host: list[str] = field(default_factory=list)
    max_retry_after: float = 120.0
    max_page_bytes: int = 256 * _MB

    def query_given(self) -> bool:
        """Whether an option that only a STAC API source takes was given (an error for files)."""
        return bool(self.collection or self.bbox or self.datetime or self.ids or self.max_items)

    def http_options(self) -> dict[str, Any]:
        """What ``Http`` takes (discover, a mapping's HTTP source), checked."""
        from stacbatch.engine._headers import parse_headers

        self._check_http()
        return {
            "headers": parse_headers(self.header),
            "timeout": self.timeout,
            "rate_limit": self.rate_limit,
            "max_retries": self.max_retries,
            "max_retry_after": self.max_retry_after,
            "max_page_bytes": self.max_page_bytes,
        }

    def _check_http(self) -> None:
        from stacbatch.engine._headers import parse_header_host

        for host in self.header_host:
            parse_header_host(host)
        if self.timeout <= 0:
            raise InputError(f"--timeout must be positive, got {self.timeout:g}")
        if self.max_retries < 0:
            raise InputError(f"--max-retries must be 0 or more, got {self.max_retries}")
        if self.max_retry_after < 0:
            raise InputError(f"--max-retry-after must be 0 or more seconds, got {self.max_retry_after:g}")
        if self.max_page_bytes < 1:
            raise InputError(f"--max-page-bytes must be at least 1, got {self.max_page_bytes}")

    def api_options(self, **extra: Any) -> ApiOptions:
        """The checked ``ApiOptions`` (``extra``: the command's own fields, e.g. ``requests``)."""
        from stacbatch.api import ApiOptions, check_datetime, parse_bbox, parse_headers

        self._check_http()
        if self.method.upper() not in ("AUTO", "GET", "POST"):
            raise InputError(f"--method must be auto, GET or POST, got {self.method!r}")
        checks = [
            ("--windows", self.windows, 1, "at least 1"),
            ("--window-pages", self.window_pages, 0, "0 (never split) or more"),
            ("--max-items", self.max_items, 1, "at least 1"),
            ("--limit", self.limit, 1, "at least 1"),
            ("--max-pages", self.max_pages, 1, "at least 1"),
        ]
        for name, value, least, what in checks:
            if value is not None and value < least:
                raise InputError(f"{name} must be {what}, got {value}")
        return ApiOptions(
            collections=self.collection,
            bbox=parse_bbox(self.bbox) if self.bbox else None,
            datetime=check_datetime(self.datetime) if self.datetime else None,
            ids=[i for i in self.ids.split(",") if i] if self.ids else None,
            max_items=self.max_items,
            concurrency=self.concurrency,
            rate_limit=self.rate_limit,
            max_retries=self.max_retries,
            timeout=self.timeout,
            headers=parse_headers(self.header),
            header_hosts=list(self.header_host),
            limit=self.limit,
            method=self.method.upper() if self.method.upper() != "AUTO" else "auto",
            windows=self.windows,
            window_pages=self.window_pages,
            max_pages=self.max_pages,
            max_retry_after=self.max_retry_after,
            max_page_bytes=self.max_page_bytes,
            **extra,
        )


def _options() -> dict[str, tuple[Any, Any]]:
    """name -> (type, a new typer option): made afresh for each command."""
    return {
        "collection": (
            list[str],
            typer.Option([], "--collection", "-c", help="API: collection ids or globs (repeatable)."),
        ),
        "bbox": (str | None, typer.Option(None, "--bbox", help="API: west,south,east,north.")),
        "datetime": (
            str | None,
            typer.Option(None, "--datetime", help="API: RFC 3339 datetime or interval a/b (.. open)."),
        ),
        "ids": (str | None, typer.Option(None, "--ids", help="API: comma-separated item ids.")),
        "max_items": (int | None, typer.Option(None, "--max-items", help="API: stop after this many items.")),
        "limit": (
            int | None,
            typer.Option(
                None,
                "--limit",
                help="API: items per page (default: a large page, 1000, which servers cap at their maximum; "
                "100 when the server refuses it).",
            ),
        ),
        "method": (str, typer.Option("auto", "--method", help="API: auto | GET | POST item search.")),
        "windows": (
            int | None,
            typer.Option(
                None,
                "--windows",
                help="API: time windows per collection fetched concurrently (default: to fill --concurrency).",
            ),
        ),
        "window_pages": (
            int,
            typer.Option(
                10,
                "--window-pages",
                help="API: split a window further when the server's count says it has more pages than this (0: never).",
            ),
        ),
        "max_pages": (
            int,
            typer.Option(100_000, "--max-pages", help="API: pages one query may take; past it the query fails."),
        ),
        "concurrency": (int, typer.Option(8, "--concurrency", help="API: requests in flight.")),
        "rate_limit": (
            float | None,
            typer.Option(None, "--rate-limit", help="API: requests per second per host."),
        ),
        "max_retries": (
            int,
            typer.Option(
                5,
                "--max-retries",
                help="API: retries of a failing request (429, 5xx, timeouts, cut off bodies).",
            ),
        ),
        "timeout": (float, typer.Option(60.0, "--timeout", help="API: seconds per request.")),
        "header": (
            list[str],
            typer.Option(
                [],
                "--header",
                "-H",
                help='API: "Name: value" (${ENV} expanded; repeatable); sent only to the URL\'s own origin.',
            ),
        ),
        "header_host": (
            list[str],
            typer.Option(
                [],
                "--header-host",
                help="API: also send --header values to this HOST, HOST:PORT or https://HOST (repeatable).",
            ),
        ),
        "max_retry_after": (
            float,
            typer.Option(
                120.0,
                "--max-retry-after",
                help="API: longest Retry-After (seconds) waited for; a longer one fails the request at once.",
            ),
        ),
        "max_page_bytes": (
            int,
            typer.Option(256 * _MB, "--max-page-bytes", help="API: largest response accepted, in bytes."),
        ),
    }


#: the options that make sense where only collections are listed (discover): no item query, no paging
HTTP_ONLY = ("header", "header_host", "timeout", "rate_limit", "max_retries", "max_retry_after", "max_page_bytes")


def with_source_options(
    *, only: tuple[str, ...] | None = None, skip: tuple[str, ...] = ()
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Add the source options (``only`` those, or all but ``skip``) to a command, which takes them as one
    ``source: SourceArgs`` parameter (the options it leaves out keep their defaults)."""

    def wrap(command: Callable[..., None]) -> Callable[..., None]:
        chosen = {k: v for k, v in _options().items() if (only is None or k in only) and k not in skip}
        names = {f.name for f in fields(SourceArgs)}
        assert set(chosen) <= names

        @functools.wraps(command)
        def run(**kwargs: Any) -> None:
            values = {k: kwargs.pop(k) for k in chosen}
            command(**kwargs, source=SourceArgs(**values))

        sig = inspect.signature(command, eval_str=True)
        own = [p for p in sig.parameters.values() if p.name != "source"]
        added = [
            inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=kind)
            for k, (kind, opt) in chosen.items()
        ]
        run.__signature__ = sig.replace(  # type: ignore[attr-defined]
            parameters=[p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + added
        )
        run.__annotations__ = {p.name: p.annotation for p in run.__signature__.parameters.values()}  # type: ignore[attr-defined]
        del run.__wrapped__  # typer must read the signature above, not the command's
        return run

    return wrap
