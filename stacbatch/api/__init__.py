"""STAC APIs as sources: discovery, paged and concurrent item fetching with rate limits and retries."""

from stacbatch.api._http import Http, HttpError
from stacbatch.api._options import ApiOptions, ApiStats, check_datetime, parse_bbox
from stacbatch.api._source import ApiSource
from stacbatch.engine._headers import parse_headers

__all__ = [
    "ApiOptions",
    "ApiSource",
    "ApiStats",
    "Http",
    "HttpError",
    "check_datetime",
    "parse_bbox",
    "parse_headers",
]
