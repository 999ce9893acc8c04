"""The optional C kernel (stacbatch/_kernel.c). Everything else is declared in pyproject.toml.

``optional=True``: where no C compiler is found the install still succeeds and stacbatch runs its pure-Python
path (same results, slower); ``stacbatch info --version`` says which one is in use.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "stacbatch._kernel",
            sources=["stacbatch/_kernel.c"],
            depends=["stacbatch/_kernel_scan.h", "stacbatch/_kernel_patch.h", "stacbatch/_kernel_parquet.h", "stacbatch/_kernel_wkt.h"],
            extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)
