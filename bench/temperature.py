"""Would a softmax temperature calibrated on the tune subjects help the press locators?

For every press-locator folder of a `bench/models.py` work folder (``<work>/<dataset>/
models/press*``), the step scores are divided by each temperature of ``TEMPERATURES``; the
one with the best tune NRMSE is kept, and the validation NRMSE is printed at temperature 1
and at the chosen one. A check of a setting, run on the bench's own trained models.

Usage: python bench/temperature.py --work DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from overnight.evaluation import load_trained_model, nrmse
from overnight.layout import NightFolder
from overnight.models.press import PressLocator
from overnight.windows.cache import WindowSet, load_windows
from overnight.windows.split import read_split

TEMPERATURES = (0.5, 1.0, 1.5, 2.0, 3.0, 5.0)


@torch.inference_mode()
def predict_at(model: PressLocator, windows: WindowSet, temperature: float) -> np.ndarray:
    x = model.neutralize(torch.as_tensor(windows.eeg))
    scores = model.press_scores(x) / temperature
    return model.to_seconds(model._output_from_scores(scores, x, None)).squeeze(1).numpy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="a bench/models.py work folder")
    args = parser.parse_args(argv)
    print("| dataset | model | tune-chosen temperature | validation at 1 | at the chosen |")
    print("| --- | --- | --- | --- | --- |")
    for dataset in sorted(p for p in args.work.iterdir() if (p / "split.json").exists()):
        folder = NightFolder(dataset)
        split = read_split(folder.split)
        tune, val = (load_windows(folder.windows, split[side]) for side in ("tune", "val"))
        for model_dir in sorted((folder.models).glob("press*")):
            model, _ = load_trained_model(model_dir)
            tuned = {t: nrmse(tune.rt, predict_at(model, tune, t)) for t in TEMPERATURES}
            best = min(tuned, key=tuned.__getitem__)
            print(f"| {dataset.name} | {model_dir.name} | {best:g} | "
                  f"{nrmse(val.rt, predict_at(model, val, 1.0)):.3f} | "
                  f"{nrmse(val.rt, predict_at(model, val, best)):.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
