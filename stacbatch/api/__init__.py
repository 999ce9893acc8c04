"""STAC APIs as sources: discovery, paged and concurrent item fetching with rate limits and retries."""

from stacbatch._headers import parse_headers
from stacbatch.api._http import Http, HttpError
from stacbatch.api._source import ApiOptions, ApiSource, ApiStats, check_datetime, parse_bbox

__all__ = ["ApiOptions", "ApiSource", "ApiStats", "Http", "HttpError", "check_datetime", "parse_bbox", "parse_headers"]
