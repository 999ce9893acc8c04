"""Imported last by the fork server (``cli._prestart``): move everything imported so far to the collector's
permanent generation, as the ``gc.freeze`` documentation advises before forking. The workers forked from it then
never traverse (nor, by touching reference counts, copy) the modules' objects in their collections."""

import gc

gc.freeze()
gc.enable()
