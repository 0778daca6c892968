"""Test-only JOB prefix that breaks one job, to show what the night does about it.

    make overnight JOB="python tests/fault_shim.py"  with  OVERNIGHT_FAULT=<fault>

runs every job as ``python`` would, except for the fault:
- ``hybrid-first-batch``: the hybrid model raises on its first training batch (in the
  training job: the preflight's model check builds it unbroken);
- ``features-hang``: the features job of the night (not of its preflight) hangs, deaf to
  SIGTERM, as a stalled mount or a deadlocked loader would;
- ``search-hang-after-epoch``: a search worker hangs once its first trial has reported its
  first epoch (checkpoint written), so a test can kill it in the middle of a trial.
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
SEARCH_HANG = "search-hang-after-epoch"
HANG_PID_FILE = "OVERNIGHT_HANG_PID_FILE"  # where the hanging job writes its pid


def _break_the_hybrid() -> None:
    from overnight.models.hybrid import HybridCNN

    def raise_on_first_batch(self, x, features=None):
        raise RuntimeError("injected fault: the hybrid raises on its first batch")

    HybridCNN.standardized_output = raise_on_first_batch


def _hang() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with open(os.environ[HANG_PID_FILE], "w") as fh:
        fh.write(str(os.getpid()))
    print("hanging (injected fault)", flush=True)
    while True:
        time.sleep(60)


def _hang_after_first_report() -> None:
    import optuna

    report = optuna.trial.Trial.report

    def report_then_hang(self, value, step):
        report(self, value, step)
        _hang()

    optuna.trial.Trial.report = report_then_hang


if __name__ == "__main__":
    fault = os.environ.get("OVERNIGHT_FAULT")
    script, *arguments = sys.argv[1:]
    if fault == FAULT and script.endswith("train.py"):
        _break_the_hybrid()
    if fault == SEARCH_HANG:
        _hang_after_first_report()
    if fault == HANG and script.endswith("features.py") \
            and not any("/preflight/" in a for a in arguments):
        _hang()
    sys.argv = [script, *arguments]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    runpy.run_path(script, run_name="__main__")
