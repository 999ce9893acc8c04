"""The ``stacbatch`` command line. Data goes to stdout; progress, summaries and errors go to stderr."""

import os
import sys

# numpy's OpenBLAS starts a busy-waiting thread per core at import; stacbatch does no linear algebra, and those
# threads took CPU from the parser processes on a two-core machine. Set before numpy is first imported; worker
# processes inherit it.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import gc

from stacbatch.cli._prestart import prestart  # after the environment is set: the fork server inherits it

prestart(sys.argv)

# Importing creates ~300k objects and no garbage: collecting meanwhile is wasted, and so is traversing them again
# in every later full collection and once more at exit (~0.1 s of a 3 s load). Frozen, they are never traversed.
gc.disable()
from stacbatch.cli._main import app, main  # noqa: E402

gc.freeze()
gc.enable()

__all__ = ["app", "main"]
