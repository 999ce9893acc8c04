"""Imported first by the fork server (``cli._prestart``): no cyclic garbage collection while it imports the
worker modules, which create hundreds of thousands of objects and no garbage. ``_gc_freeze`` turns it back on.
The fork server also starts watching the process that started it (``_orphan``)."""

import gc

from stacbatch.engine._orphan import watch_main

gc.disable()
watch_main()  # the fork server ends with the process that started it
