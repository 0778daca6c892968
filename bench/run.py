"""Benchmarks of the night at real scale; writes this machine's section of docs/BENCHMARKS.md.

Every figure is measured in this run, beside a reference in the old style on the same
machine: features against a per-window NumPy/SciPy pass (one window read at a time,
`polyfit`, Welch) run on a sample and scaled; training against a DataLoader of batch 32
reading single windows from HDF5 with 4 workers; and the whole chain (features, both
trainings with early stopping, compare, report) timed stage by stage with the peak
resident memory of each stage's process.

Usage: python bench/run.py --work DIR [--n N] [--out docs/BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from overnight.features.cache import open_features
from overnight.layout import NightFolder
from overnight.windows.cache import open_cache

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("bench")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="folder for the bench data")
    parser.add_argument("--n", type=int, default=None,
                        help="windows (default: the existing cache in --work, else 41071 on "
                             "a GPU and 8192 on a CPU)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "BENCHMARKS.md")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw figures")
    parser.add_argument("--skip-quality", action="store_true",
                        help="skip the night-vs-small-batch-fp32 quality comparison (GPU)")
    parser.add_argument("--only-windows", action="store_true",
                        help="only the window stage on 500 Hz recordings (its own section)")
    parser.add_argument("--only-quality", action="store_true",
                        help="only the bench data and the quality comparison (its own section)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    gpu = torch.cuda.is_available()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    folder = NightFolder(work)
    windows, split = folder.windows, folder.split
    n = args.n or _cached_size(windows) or (41_071 if gpu else 8_192)
    config = REPO / "configs" / ("bench-gpu.toml" if gpu else "bench-cpu.toml")
    results: dict[str, Any] = {"machine": machine(), "n_windows": n, "config": str(
        config.relative_to(REPO)), "command": " ".join(["python", "bench/run.py", *sys.argv[1:]])}


    def measure(name: str, fn: Any, *fn_args: Any) -> None:
        """One measurement; a failure is recorded and the others still run."""
        try:
            results[name] = fn(*fn_args)
        except Exception as exc:
            log.exception("%s failed", name)
            results.setdefault("errors", {})[name] = f"{type(exc).__name__}: {exc}"
        if args.json:
            args.json.write_text(json.dumps(results, indent=2, default=str))

    if not args.only_quality:
        measure("window_stage", window_stage, work / "bids-500hz")
    if args.only_windows:
        return _finish(args.out, results, sections=("windows",))
    if _cached_size(windows) != n:
        measure("bench_data", run_job, "bench data", [
            "bench/make_data.py", "--n", str(n), "--out", str(windows), "--split-out", str(split)])
    if args.only_quality:
        measure("quality", quality_comparison, work, windows, split, config)
        return _finish(args.out, results, sections=("quality",))
    measure("raw_read", raw_read, windows)
    measure("features", features_job, windows, folder.features)
    measure("features_reference", features_reference, windows, 300 if gpu else 150)
    measure("training", training_throughput, windows, split, config)
    measure("training_reference", training_reference, windows, split, 150)
    measure("chain", chain, work, windows, split, config)
    sections = ["chain", "windows"]
    if gpu and not args.skip_quality:
        measure("quality", quality_comparison, work, windows, split, config)
        sections.append("quality")
    return _finish(args.out, results, sections=tuple(sections))


def _finish(out: Path, results: dict[str, Any], sections: tuple[str, ...]) -> int:
    if "errors" in results:
        log.error("failed measurements: %s", results["errors"])
        return 1
    write_markdown(out, results, sections)
    print(summary(results) if "chain" in sections else "")
    return 0


# --- Measurements ----------------------------------------------------------------------

# Runs a script with sys.argv set and writes its own peak RSS (VmHWM, KiB) to the file named
# by BENCH_PEAK_FILE. Not getrusage/wait4: Linux carries the pre-exec peak of the forked
# parent (this large process) into those.
_PEAK_WRAPPER = r"""
import os, re, runpy, sys
script = sys.argv[1]
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
try:
    runpy.run_path(script, run_name="__main__")
finally:
    with open("/proc/self/status") as status, open(os.environ["BENCH_PEAK_FILE"], "w") as fh:
        fh.write(re.search(r"VmHWM:\s*(\d+)", status.read()).group(1))
"""


def run_job(name: str, argv: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a script of this repository in its own process (``env`` added to the
    environment): wall time and peak RSS."""
    log.info("%s: %s", name, " ".join(argv))
    with tempfile.NamedTemporaryFile(prefix="bench-peak-") as peak_file:
        env = {**os.environ, **(env or {}), "BENCH_PEAK_FILE": peak_file.name}
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", _PEAK_WRAPPER, *argv], cwd=REPO, env=env,
                              check=False)
        seconds = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(f"{name} failed with exit code {proc.returncode}")
        peak_gb = int(Path(peak_file.name).read_text()) * 1024 / 1e9  # KiB on Linux
    log.info("%s: %.1f s, peak RSS %.2f GB", name, seconds, peak_gb)
    return {"seconds": round(seconds, 2), "peak_rss_gb": round(peak_gb, 3)}


# The window stage's input: 500 Hz EEGLAB recordings, as the HBN originals, that the stage
# must band-pass, resample to 100 Hz and cut.
WINDOW_BENCH_SYNTH = ("synth.sfreq_hz=500", "synth.fmt='set'", "synth.n_subjects=20",
                      "synth.runs_per_subject=3")


def window_stage(bids: Path) -> dict[str, Any]:
    """The window stage with one worker and with every core, on the same recordings; their
    caches must hold the same data."""
    if not (bids / "dataset_description.json").exists():
        run_job("window-stage data", ["jobs/synth.py", "--out", str(bids),
                                      *_settings(WINDOW_BENCH_SYNTH)])
    cores = os.cpu_count() or 1
    result: dict[str, Any] = {"cores": cores}
    caches = {}
    for name, workers in (("one", 1), ("all", cores)):
        caches[name] = bids.parent / f"windows-{name}.h5"
        result[name] = run_job(f"window stage, {workers} worker(s)", [
            "jobs/windows.py", "--bids-root", str(bids), "--out", str(caches[name]),
            "--split-out", str(bids.parent / f"split-{name}.json"),
            *_settings([f"windows.workers={workers}"])])
    with open_cache(caches["one"]) as one, open_cache(caches["all"]) as every:
        result["n_windows"] = one.n_windows
        result["n_recordings"] = len(one.attr_json("sources")) + len(one.attr_json("skipped"))
        result["identical"] = np.array_equal(one.eeg[()], every.eeg[()]) and all(
            np.array_equal(one.column(c), every.column(c))
            for c in ("rt", "subject", "stim_onset_s"))
    for name in ("one", "all"):
        seconds = result[name]["seconds"]
        result[name].update(windows_per_s=round(result["n_windows"] / seconds, 1),
                            recordings_per_s=round(result["n_recordings"] / seconds, 2))
    return result


def _settings(settings: Any) -> list[str]:
    return [arg for setting in settings for arg in ("--set", setting)]


def features_job(windows: Path, out: Path) -> dict[str, Any]:
    return {**run_job("features", ["jobs/features.py", "--windows", str(windows), "--out",
                                   str(out)]), **feature_attrs(out)}


# The night's settings (the GPU config: large batch, bf16) against batch 64 in fp32, and
# the schedules that might close the gap; each over several seeds, whose spread is the
# noise the comparison is read against.
QUALITY_VARIANTS = {
    "night (sqrt LR scaling)": [],
    "night, linear LR scaling, 5 warm-up epochs": ["train.lr_scaling='linear'",
                                                  "train.warmup_epochs=5"],
    "night, 5 warm-up epochs, up to 50 epochs": ["train.warmup_epochs=5", "train.max_epochs=50",
                                                "train.patience=15"],
    "batch 64, fp32": ["train.batch_size=64", "train.precision='fp32'"],
}


def quality_comparison(work: Path, windows: Path, split: Path, config: Path,
                       seeds: tuple[int, ...] = (0, 1, 2)) -> dict[str, Any]:
    """The baseline trained with each of ``QUALITY_VARIANTS`` for every seed."""
    result: dict[str, Any] = {"seeds": list(seeds), "variants": {}}
    for number, (name, settings) in enumerate(QUALITY_VARIANTS.items()):
        runs = result["variants"][name] = {"nrmse": [], "train_seconds": [], "epochs": []}
        for seed in seeds:
            out = work / "quality" / f"variant{number}-seed{seed}"
            run_job(f"quality {name} seed {seed}", [
                "jobs/train.py", "--config", str(config), "--model", "baseline", "--windows",
                str(windows), "--split", str(split), "--out", str(out),
                *_settings([*settings, f"train.seed={seed}"])])
            meta = json.loads((out / "model.json").read_text())
            runs["nrmse"].append(meta["best_tune_nrmse"])
            runs["train_seconds"].append(meta["train_seconds"])
            runs["epochs"].append(meta["epochs_run"])
    return result


def raw_read(windows: Path, slab: int = 2048) -> dict[str, Any]:
    """Read every window in slabs, no compute: the ceiling for any pass over the file.

    Best of two passes, so both this and the feature pass read from the page cache.
    """
    timings = []
    with open_cache(windows) as cache:
        dset = cache.eeg
        buffer = np.empty((slab, *dset.shape[1:]), dtype=dset.dtype)
        for _ in range(2):
            started = time.perf_counter()
            for start in range(0, dset.shape[0], slab):
                stop = min(start + slab, dset.shape[0])
                dset.read_direct(buffer, np.s_[start:stop], np.s_[0:stop - start])
            timings.append(time.perf_counter() - started)
        n = dset.shape[0]
    return {"seconds": round(min(timings), 2), "windows_per_s": round(n / min(timings))}


def feature_attrs(path: Path) -> dict[str, Any]:
    with open_features(path) as cache:
        return {k: float(cache.attrs[k]) for k in ("compile_s", "compute_s", "windows_per_s")}


def features_reference(windows: Path, sample: int) -> dict[str, Any]:
    """The old style: open, read one window, NumPy/SciPy features (polyfit, Welch), repeat."""
    from scipy.signal import welch

    from overnight.hbn.channels import index_of

    cpp = [index_of("CPz"), index_of("Pz")]
    motor = [index_of("C3"), index_of("C4")]
    occipital = [index_of(c) for c in ("O1", "O2", "Oz")]
    with open_cache(windows) as cache:
        n, sfreq = cache.n_windows, cache.sfreq_hz
    picks = np.linspace(0, n - 1, sample).astype(int)
    started = time.perf_counter()
    for i in picks:
        with open_cache(windows) as cache:
            x = cache.eeg[i].astype(np.float64)
        x = x - x.mean(axis=0)
        signal = x[cpp].mean(axis=0)
        t = np.arange(signal.size) / sfreq
        peak = int(np.argmax(signal))
        np.polyfit(t[:max(peak, 10) + 1], signal[:max(peak, 10) + 1], 1)
        freqs, power = welch(x[motor + occipital], fs=sfreq, nperseg=100)
        for lo, hi in ((13, 30), (8, 12)):
            np.log10(power[:, (freqs >= lo) & (freqs <= hi)].mean(axis=1) + 1e-30)
        for seg in range(4):
            welch(x[motor, seg * 50:(seg + 1) * 50], fs=sfreq, nperseg=50)
    seconds = time.perf_counter() - started
    rate = sample / seconds
    return {"sample": sample, "windows_per_s": round(rate, 1),
            "scaled_seconds": round(n / rate, 1)}


def training_throughput(windows: Path, split: Path, config: Path) -> dict[str, Any]:
    """Windows/s of the baseline's training loop as the night runs it (second epoch)."""
    from overnight import distributed
    from overnight.config import load_config
    from overnight.models.registry import find_model
    from overnight.training.augment import Augmentation
    from overnight.training.data import load_split_sides
    from overnight.training.device import resolve_autocast, resolve_device
    from overnight.training.loop import LossModule, train_epoch

    cfg = load_config(config).train
    device = resolve_device(cfg.device)
    autocast = resolve_autocast(cfg.precision, device)
    train, _, _, stats = load_split_sides(windows, split, None, device, cfg)
    model = find_model("baseline").build(n_filters=cfg.n_filters,
                                         dropout=cfg.dropout).to(device)
    model.set_standardization(stats)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    generator = torch.Generator().manual_seed(0)
    with open_cache(windows) as cache:
        augmentation = Augmentation(cfg, train.margin, cache.sfreq_hz)
    timings = []
    for _ in range(3):  # the first epoch warms up kernels and caches
        _sync(device)
        started = time.perf_counter()
        train_epoch(LossModule(model), model, None, train, optimizer, scheduler, generator,
                    cfg.batch_size, cfg, augmentation, autocast, distributed.ONE_PROCESS)
        _sync(device)
        timings.append(time.perf_counter() - started)
    seconds = float(np.median(timings[1:]))
    result = {"windows_per_s": round(len(train) / seconds), "epoch_seconds": round(seconds, 3),
              "batch_size": cfg.batch_size, "precision": "bf16" if autocast else "fp32",
              "data_on_device": train.resident, "device": str(device)}
    if device.type == "cuda":
        result["peak_gpu_memory_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 2)
    return result


class _OldStyleWindows(torch.utils.data.Dataset):
    """One window per item, the file reopened for every item (as the old night did)."""

    def __init__(self, path: Path, rows: np.ndarray, targets: np.ndarray) -> None:
        self.path, self.rows, self.targets = path, rows, targets

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        with open_cache(self.path) as cache:
            x = cache.eeg[int(self.rows[i])]
        return torch.from_numpy(x), torch.tensor(self.targets[i], dtype=torch.float32)


def training_reference(windows: Path, split: Path, batches: int) -> dict[str, Any]:
    """The old loop: DataLoader(batch 32, 4 workers), fp32, the same model and device."""
    from overnight.models.registry import find_model
    from overnight.training.device import resolve_device
    from overnight.windows.split import read_split

    device = resolve_device("auto")
    with open_cache(windows) as cache:
        subjects, rt = cache.subjects(), cache.rt()
    rows = np.flatnonzero(np.isin(subjects, read_split(split)["train"]))
    warnings.filterwarnings("ignore", message="This DataLoader will create")  # 4 on purpose
    loader = torch.utils.data.DataLoader(_OldStyleWindows(windows, rows, rt[rows]),
                                         batch_size=32, shuffle=True, num_workers=4)
    model = find_model("baseline").build().to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    warmup, seen = 10, 0
    for step, (x, y) in enumerate(loader):
        if step == warmup:
            _sync(device)
            started = time.perf_counter()
        loss = torch.nn.functional.mse_loss(model(x.to(device)).squeeze(1), y.to(device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss.item()  # the old loop logged every step
        if step >= warmup:
            seen += len(y)
        if step == warmup + batches:
            break
    _sync(device)
    seconds = time.perf_counter() - started
    return {"windows_per_s": round(seen / seconds), "batches": batches, "batch_size": 32}


def chain(work: Path, windows: Path, split: Path, config: Path,
          train_settings: tuple[str, ...] = ()) -> dict[str, Any]:
    """The night's stages after the window cache, each in its own process."""
    folder = NightFolder(work)
    models, submission = folder.models, work / "submission"
    folder.comparison.unlink(missing_ok=True)
    subprocess.run(["rm", "-rf", str(models), str(submission)], check=True)
    common = ["--config", str(config), "--windows", str(windows)]
    overrides = [arg for setting in train_settings for arg in ("--set", setting)]
    stages = {
        "train-baseline": ["jobs/train.py", *common, "--model", "baseline", "--split", str(split),
                           "--out", str(models / "baseline"), *overrides],
        "train-hybrid": ["jobs/train.py", *common, "--model", "hybrid", "--split", str(split),
                         "--features", str(folder.features), "--out",
                         str(models / "hybrid"), *overrides],
        "compare": ["jobs/compare.py", *common, "--models", str(models), "--split", str(split),
                    "--submission", str(submission), "--out", str(folder.comparison)],
        "report": ["jobs/report.py", *common, "--work", str(work), "--reports",
                   str(work / "reports"), "--date", time.strftime("%Y-%m-%d")],
    }
    result: dict[str, Any] = {"features": features_job(windows, folder.features)}
    result.update({name: run_job(name, argv) for name, argv in stages.items()})
    comparison = json.loads(folder.comparison.read_text())
    result["nrmse"] = {r["name"]: r["nrmse"] for r in comparison["rows"]}
    for name in ("baseline", "hybrid"):
        meta = json.loads((models / name / "model.json").read_text())
        result[f"train-{name}"].update(epochs=meta["epochs_run"], best_epoch=meta["best_epoch"])
    return result


def _placement(training: dict[str, Any]) -> str:
    if not training["data_on_device"]:
        return "streamed from HDF5"
    return "in memory" if training["device"] == "cpu" else "on the device"


def _cached_size(windows: Path) -> int | None:
    """Windows in an existing bench cache (with its split), or None."""
    if not (windows.exists() and NightFolder(windows.parent).split.exists()):
        return None
    with open_cache(windows) as cache:
        return cache.n_windows


def _spread(values: list[float]) -> str:
    return f"{np.mean(values):.3f} (" + ", ".join(f"{v:.3f}" for v in values) + ")"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        cpu = found.group(1).strip() if found else cpu
    info = {"cpu": f"{cpu}, {os.cpu_count()} cores", "python": platform.python_version(),
            "torch": torch.__version__}
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    info["memory"] = f"{pages / 2**30:.0f} GiB"
    info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return info


# --- The report --------------------------------------------------------------------------

def summary(r: dict[str, Any]) -> str:
    c, f, t = r["chain"], r["features"], r["training"]
    chain_s = sum(c[s]["seconds"] for s in ("train-baseline", "train-hybrid", "compare",
                                            "report")) + f["seconds"]
    lines = [
        f"machine: {r['machine']['gpu']} / {r['machine']['cpu']}; {r['n_windows']} windows",
        f"raw read {r['raw_read']['windows_per_s']} win/s; features {f['windows_per_s']:.0f} "
        f"win/s (read+compute+write), {r['n_windows'] / f['seconds']:.0f} win/s job wall; "
        f"reference {r['features_reference']['windows_per_s']} win/s",
        f"training {t['windows_per_s']} win/s ({t['precision']}, batch {t['batch_size']}); "
        f"reference {r['training_reference']['windows_per_s']} win/s",
        f"chain {chain_s:.1f} s; NRMSE {c['nrmse']}",
    ]
    return "\n".join(lines)


def write_markdown(path: Path, r: dict[str, Any], sections: tuple[str, ...]) -> None:
    """Replace this machine's sections of the benchmarks page, keep the others."""
    key = r["machine"]["gpu"] if r["machine"]["gpu"] != "none" else "CPU only"
    if "chain" in sections:
        replace_section(path, key, render_section(key, r))
    if "windows" in sections:
        replace_section(path, f"window stage, {r['window_stage']['cores']} cores",
                        render_windows(r))
    if "quality" in sections:
        replace_section(path, f"quality, {key}", render_quality(key, r))


def render_quality(key: str, r: dict[str, Any]) -> str:
    """The baseline under each training schedule, over seeds."""
    q = r["quality"]
    rows = [f"## Training settings and quality, {key}\n",
            f"- command: `{r['command']}`, {time.strftime('%Y-%m-%d')} (config `{r['config']}`)",
            f"- data: {r['n_windows']:,} windows; the baseline over seeds {q['seeds']}",
            "", "| settings | tune NRMSE (mean, per seed) | epochs | training time |",
            "| --- | --- | --- | --- |"]
    for name, runs in q["variants"].items():
        rows.append(f"| {name} | {_spread(runs['nrmse'])} | "
                    + ", ".join(map(str, runs["epochs"]))
                    + f" | {np.mean(runs['train_seconds']):.0f} s |")
    return "\n".join(rows) + "\n\n"


def render_windows(r: dict[str, Any]) -> str:
    """The window stage: one worker against every core, on the same recordings."""
    w, m = r["window_stage"], r["machine"]
    one, every = w["one"], w["all"]
    return "\n".join([
        f"## Window stage, {w['cores']} cores\n",
        f"- command: `{r['command']}` (`make bench-windows`; the full `make bench` runs it "
        f"too), {time.strftime('%Y-%m-%d')}",
        f"- machine: {m['cpu']}; {m['memory']}; Python {m['python']}",
        f"- data: {w['n_recordings']} recordings of `make synth` at 500 Hz, EEGLAB `.set` "
        f"({', '.join(WINDOW_BENCH_SYNTH)}): read, band-passed, resampled to 100 Hz, checked, "
        f"cut into {w['n_windows']:,} windows",
        "",
        "| workers | wall (job) | windows/s | recordings/s | peak RSS of the job's own "
        "process |",
        "| --- | --- | --- | --- | --- |",
        f"| 1 | {one['seconds']:.1f} s | {one['windows_per_s']:,} | {one['recordings_per_s']} "
        f"| {one['peak_rss_gb']:.2f} GB |",
        f"| {w['cores']} (all cores) | {every['seconds']:.1f} s | {every['windows_per_s']:,} | "
        f"{every['recordings_per_s']} | {every['peak_rss_gb']:.2f} GB |",
        "",
        f"Speed-up {one['seconds'] / every['seconds']:.2f}x; the two caches hold "
        f"{'the same' if w['identical'] else 'DIFFERENT'} EEG, RTs, subjects and onsets. "
        "With one worker the job reads in its own process, so its peak is what one worker "
        "needs (one 500 Hz recording and MNE); with more, each worker needs about as much.",
        "",
    ]) + "\n"


def replace_section(path: Path, key: str, body: str) -> None:
    """Put ``body`` between this key's markers in ``path``, replacing what was there."""
    from overnight.atomic import write_text

    section = f"<!-- bench:{key} -->\n{body}<!-- /bench:{key} -->\n"
    text = path.read_text() if path.exists() else _HEADER
    pattern = re.compile(rf"<!-- bench:{re.escape(key)} -->.*?<!-- /bench:{re.escape(key)} -->\n",
                         re.DOTALL)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text + "\n" + section
    write_text(path, text)


_HEADER = """# Benchmarks

Measured by `make bench` (`bench/run.py`), which regenerates the figures of the machine it
runs on and keeps the other machines' sections. Every ratio compares two measurements of the
same run on the same machine. Peak memory is the peak resident set size of the stage's own
process (`VmHWM`, read by the process as it exits). The data is `make bench-data`'s
simulated window cache (same HDF5 layout and generator physiology as the window stage's
output); writing it is timed as `bench data`, since reading real BIDS recordings is not part
of this benchmark.
"""


def render_section(key: str, r: dict[str, Any]) -> str:
    m, n = r["machine"], r["n_windows"]
    f, fr, rr = r["features"], r["features_reference"], r["raw_read"]
    t, tr, c = r["training"], r["training_reference"], r["chain"]
    feat_wall_rate = n / f["seconds"]
    chain_stages = ("features", "train-baseline", "train-hybrid", "compare", "report")
    chain_s = sum(c[s]["seconds"] for s in chain_stages)
    rows = [
        f"## {key}\n",
        f"- command: `{r['command']}` (config `{r['config']}`), {time.strftime('%Y-%m-%d')}",
        f"- machine: {m['cpu']}; {m['memory']}; GPU: {m['gpu']}; Python {m['python']}, "
        f"torch {m['torch']}",
        f"- data: {n:,} windows (129 x 200, float32)",
        "",
        "| stage | figure | reference (same run) | ratio | peak RSS |",
        "| --- | --- | --- | --- | --- |",
    ]
    if "bench_data" in r:
        rows.append(f"| bench data (window cache, simulated) | {r['bench_data']['seconds']:.1f} s "
                    f"| | | {r['bench_data']['peak_rss_gb']:.2f} GB |")
    rows += [
        f"| raw read of the cache (slabs of 2,048) | {rr['windows_per_s']:,} windows/s | | | |",
        f"| features: read, compute, write (the job's timed pass) | "
        f"{f['windows_per_s']:,.0f} windows/s | per-window NumPy/SciPy: "
        f"{fr['windows_per_s']:,.1f} windows/s (sample of {fr['sample']}, scaled to "
        f"{fr['scaled_seconds']:,.0f} s) | {f['windows_per_s'] / fr['windows_per_s']:,.0f}x; "
        f"{f['windows_per_s'] / rr['windows_per_s']:.2f} of the raw read rate | |",
        f"| features job, wall (start-up, compile {f['compile_s']:.1f} s, pass) | "
        f"{f['seconds']:.1f} s ({feat_wall_rate:,.0f} windows/s) | | | "
        f"{f['peak_rss_gb']:.2f} GB |",
        f"| baseline training loop ({t['precision']}, batch {t['batch_size']}, data "
        f"{_placement(t)}) | {t['windows_per_s']:,} "
        f"windows/s | DataLoader, batch 32, 4 workers, fp32: {tr['windows_per_s']:,} windows/s "
        f"| {t['windows_per_s'] / tr['windows_per_s']:,.1f}x | |",
    ]
    for stage in ("train-baseline", "train-hybrid", "compare", "report"):
        s = c[stage]
        extra = f" ({s['epochs']} epochs, best {s['best_epoch']})" if "epochs" in s else ""
        rows.append(f"| {stage}{extra} | {s['seconds']:.1f} s | | | {s['peak_rss_gb']:.2f} GB |")
    rows.append(f"| **whole chain** (features, both trainings, compare, report) | "
                f"**{chain_s:.1f} s** | | | max "
                f"{max(c[s]['peak_rss_gb'] for s in chain_stages):.2f} GB |")
    rows.append("")
    scores = ", ".join(f"{k} {v:.3f}" for k, v in c["nrmse"].items() if v is not None)
    rows.append(f"Validation NRMSE: {scores}.")
    if "quality" in r:
        rows.append(f"Quality of the night's settings: see \"Training settings and quality, "
                    f"{key}\".")
    if "peak_gpu_memory_gb" in t:
        rows.append(f"Peak GPU memory of the training loop: {t['peak_gpu_memory_gb']} GB.")
    rows.append("")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
