"""The plumbing every layer stands on: file systems (``_fs``), JSON text (``_json``), worker pools (``_pool``), SQL
files and quoting (``_sql``), the stage's on-disk names (``_layout``), parse units (``_units``) and their hand-off
to workers (``_handoff``), and the garbage-collector and orphan-file guards of long runs.

Nothing here imports another stacbatch package (import-linter checks it: ``pyproject.toml``). The modules keep
their leading underscore: they are stacbatch's own toolbox, not part of the public API.
"""
