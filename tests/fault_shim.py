"""Test-only JOB prefix that breaks one job, to show what the night does about it.

    make overnight JOB="python tests/fault_shim.py"  with  OVERNIGHT_FAULT=<fault>

runs every job as ``python`` would, except for the fault:
- ``hybrid-first-batch``: the hybrid model raises on its first batch;
- ``features-hang``: the features job of the night (not of its preflight) hangs, deaf to
  SIGTERM, as a stalled mount or a deadlocked loader would.
The faults live here, never in the library.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import time

FAULT = "hybrid-first-batch"
HANG = "features-hang"
HANG_PID_FILE = "OVERNIGHT_HANG_PID_FILE"  # where the hanging job writes its pid


def _break_the_hybrid() -> None:
    from overnight.models import HybridCNN

    def raise_on_first_batch(self, x, features=None):
        raise RuntimeError("injected fault: the hybrid raises on its first batch")

    HybridCNN.standardized_output = raise_on_first_batch


def _hang() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with open(os.environ[HANG_PID_FILE], "w") as fh:
        fh.write(str(os.getpid()))
    print("features: hanging (injected fault)", flush=True)
    while True:
        time.sleep(60)


if __name__ == "__main__":
    fault = os.environ.get("OVERNIGHT_FAULT")
    if fault == FAULT:
        _break_the_hybrid()
    script, *arguments = sys.argv[1:]
    if fault == HANG and script.endswith("features.py") \
            and not any("/preflight/" in a for a in arguments):
        _hang()
    sys.argv = [script, *arguments]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    runpy.run_path(script, run_name="__main__")
