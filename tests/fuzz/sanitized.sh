#!/usr/bin/env bash
# `make fuzz`: the C kernel built with AddressSanitizer and UBSan, then the tests that feed it mutated, random and
# real bytes (every entry point beside its pure-Python twin) run against that build. test_kernel_fuzz.py checks that
# every entry point of stacbatch/kernel/_kernel.pyi is called by one of the files listed at the end. A memory error or undefined
# behaviour aborts the run. The Python interpreter is not instrumented: libasan is preloaded, pymalloc is off.
set -euo pipefail
PY="${1:?usage: sanitized.sh PYTHON}"
cd "$(dirname "$0")/../.."
OUT=build/sanitized
rm -rf "$OUT" && mkdir -p "$OUT"
cp -r stacbatch sql "$OUT"/
rm -f "$OUT"/stacbatch/kernel/_kernel*.so
suffix="$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')"
pyinc="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
painc="$("$PY" -c 'import pyarrow; print(pyarrow.get_include())')"
xxh=()
[ -f "$painc/arrow/vendored/xxhash/xxhash.h" ] && xxh=(-I"$painc" -DSTACBATCH_XXH3=1)
gcc -shared -fPIC -std=c11 -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
  -fno-sanitize-recover=undefined -I"$pyinc" "${xxh[@]}" stacbatch/kernel/_kernel.c -o "$OUT/stacbatch/kernel/_kernel$suffix"
export LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
# Reports go to files (pytest captures the test's stderr, and an aborted process never shows it): printed on failure.
LOGS="$PWD/$OUT/reports"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:log_path=$LOGS/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$LOGS/ubsan"
mkdir -p "$LOGS"
trap 'status=$?; if [ $status -ne 0 ]; then cat "$LOGS"/* 2>/dev/null | head -60; fi' EXIT
export PYTHONMALLOC=malloc PYTHONPATH="$PWD/$OUT" STACBATCH_REQUIRE_KERNEL=1
# From inside $OUT: Python puts the working directory first on sys.path, so `stacbatch` is the sanitized copy.
ROOT="$PWD"
cd "$OUT"
"$PY" -c 'import stacbatch.kernel._kernel as k, sys; sys.exit(0 if "/build/sanitized/" in k.__file__ else "not the sanitized kernel: " + k.__file__)'
"$PY" -m pytest -q -p no:cacheprovider -x --rootdir "$ROOT" \
  "$ROOT"/tests/test_kernel.py "$ROOT"/tests/test_kernel_props.py "$ROOT"/tests/test_asset_fields.py \
  "$ROOT"/tests/test_wkt.py "$ROOT"/tests/test_pages.py "$ROOT"/tests/test_assemble.py \
  "$ROOT"/tests/test_kernel_fuzz.py
