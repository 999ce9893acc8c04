"""Imported first by the fork server (see ``_pool.prestart``): no cyclic garbage collection while it imports the
worker modules, which create hundreds of thousands of objects and no garbage. ``_gc_freeze`` turns it back on."""

import gc

gc.disable()
