"""Score an unpacked submission as the challenge's scoring script does. Run as a script by
``overnight.champion.score`` in the scorer's environment (Python 3.10, torch 2.2):

    python -I scorer_run.py SUBMISSION_DIR INPUTS.npz OUT.json SFREQ

INPUTS.npz holds ``windows`` (N, 129, T) float32 volts in recording order and
``challenge_2_rows``, the windows Challenge 2 is asked about. For each challenge: a new
``Submission(SFREQ, DEVICE)`` (the GPU when there is one), the model in eval mode, every
window alone through ``model.forward`` under ``torch.inference_mode()``, its ``[0][0]``.
OUT.json gets the predictions, the seconds per window and the process's peak memory. A
fault is one line on stderr and exit status 2.
"""

import json
import os
import resource
import sys


def _fail(line: str) -> None:
    print(line, file=sys.stderr)
    raise SystemExit(2)


def _answer(challenge, get_model, windows, device):
    import math
    import time

    import torch

    try:
        model = get_model()
        model.eval()
    except Exception as exc:
        _fail(f"challenge {challenge}: the submission cannot build its model: "
              f"{type(exc).__name__}: {exc}")
    predictions = []
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(len(windows)):
            y_pred = model.forward(windows[i:i + 1].to(device))
            shape = tuple(getattr(y_pred, "shape", ()))
            if shape != (1, 1):
                _fail(f"challenge {challenge}: one window in, the model answers shape {shape};"
                      " the scorer keeps y_pred[0][0], so it must answer (B, 1)")
            predictions.append(float(y_pred.detach().cpu().numpy()[0][0]))
    seconds = time.perf_counter() - start
    bad = sum(not math.isfinite(p) for p in predictions)
    if bad:
        _fail(f"challenge {challenge}: {bad} of {len(predictions)} predictions are not finite; "
              "the scorer's NRMSE (scikit-learn) refuses them")
    return predictions, seconds / max(len(windows), 1)


def main() -> None:
    submission_dir, inputs_npz, out_json, sfreq = sys.argv[1:5]
    sys.path.insert(0, submission_dir)
    os.chdir(submission_dir)  # as the scorer does: the weights may sit in the working folder
    import numpy as np
    import torch

    sfreq = float(sfreq)
    sfreq = int(sfreq) if sfreq.is_integer() else sfreq
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        from submission import Submission
    except Exception as exc:
        _fail(f"submission.py fails to import: {type(exc).__name__}: {exc}")
    inputs = np.load(inputs_npz)
    windows = torch.from_numpy(inputs["windows"])
    rows = torch.from_numpy(inputs["challenge_2_rows"])
    result = {"device": str(device), "python": sys.version.split()[0],
              "torch": torch.__version__}
    for challenge, x in ((1, windows), (2, windows[rows])):
        def get_model(challenge=challenge):  # a new Submission per challenge
            return getattr(Submission(sfreq, device), f"get_model_challenge_{challenge}")()

        predictions, per_window_s = _answer(challenge, get_model, x, device)
        result[f"challenge_{challenge}"] = {"predictions": predictions,
                                            "seconds_per_window": per_window_s}
    result["peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    with open(out_json, "w", encoding="utf-8") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
