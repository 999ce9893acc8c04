"""The optional C kernel (stacbatch/kernel/_kernel.c). Everything else is declared in pyproject.toml.

``optional=True``: where no C compiler is found the install still succeeds and stacbatch runs its pure-Python
path (same results, slower); ``stacbatch info --version`` says which one is in use.

xxHash comes from the copy pyarrow's wheel carries (a build requirement): with it the kernel hashes the items a
mapping assembles itself; without it, Python hashes them (same hashes).
"""

import os

from setuptools import Extension, setup

HEADERS = [
    "_kernel_scan.h",
    "_kernel_patch.h",
    "_kernel_parquet.h",
    "_kernel_wkt.h",
    "_kernel_assemble.h",
    "_kernel_props.h",
    "_kernel_assets.h",
]


def _xxhash() -> tuple[list[str], list[tuple[str, str | None]]]:
    try:
        import pyarrow
    except ImportError:
        return [], []
    include = pyarrow.get_include()
    if not os.path.exists(os.path.join(include, "arrow", "vendored", "xxhash", "xxhash.h")):
        return [], []
    return [include], [("STACBATCH_XXH3", "1")]


include_dirs, macros = _xxhash()
setup(
    ext_modules=[
        Extension(
            "stacbatch.kernel._kernel",
            sources=["stacbatch/kernel/_kernel.c"],
            depends=[f"stacbatch/kernel/{h}" for h in HEADERS],
            include_dirs=include_dirs,
            define_macros=macros,
            extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)
