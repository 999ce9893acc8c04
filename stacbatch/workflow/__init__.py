"""Runs that span several steps of the layers below: a load in committed segments with its API checkpoint and
resume, a load through a mapping. The CLI parses options and prints; what to run, in which order, and what to
record so that a rerun can go on, is decided here (and is as usable from Python).
"""

from stacbatch.workflow._load import CHECKPOINT, failed_requests, load, resume_point

__all__ = ["CHECKPOINT", "failed_requests", "load", "resume_point"]
