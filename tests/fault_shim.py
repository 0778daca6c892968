"""Test-only JOB prefix that breaks one job, to show the preflight catches it.

    make overnight JOB="python tests/fault_shim.py"  with  OVERNIGHT_FAULT=hybrid-first-batch

runs every job as ``python`` would, except that the hybrid model raises on its first
batch. The fault lives here, never in the library.
"""

from __future__ import annotations

import os
import runpy
import sys

FAULT = "hybrid-first-batch"


def _break_the_hybrid() -> None:
    from overnight.models import HybridCNN

    def raise_on_first_batch(self, x, features=None):
        raise RuntimeError("injected fault: the hybrid raises on its first batch")

    HybridCNN.standardized_output = raise_on_first_batch


if __name__ == "__main__":
    if os.environ.get("OVERNIGHT_FAULT") == FAULT:
        _break_the_hybrid()
    script, *arguments = sys.argv[1:]
    sys.argv = [script, *arguments]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    runpy.run_path(script, run_name="__main__")
