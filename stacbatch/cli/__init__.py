"""The ``stacbatch`` command line. Data goes to stdout; progress, summaries and errors go to stderr."""

from stacbatch.cli._main import app, main

__all__ = ["app", "main"]
