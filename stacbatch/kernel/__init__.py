"""The C kernel (``_kernel``, built by setup.py when a compiler is there) and the Python code that wraps it or
twins it: NDJSON blocks to stage batches (``_scan``, twin ``_rows.BatchBuilder``), GeoJSON to WKB (``_geometry``),
the canonical stream and content hashes (``_canonical``). Each twin gives the same results as the kernel, slower;
the design and the invariants are in docs/kernel.md.

It imports only ``stacbatch.engine`` (import-linter checks it: ``pyproject.toml``).
"""
