"""Import a submission the way the scorer does, in a fresh interpreter, call its models as
the scorer does, and save what they predict and how fast. Run as a script by
``overnight.champion.submission.check_in_fresh_process``, in the scorer's environment
when there is one (``overnight.champion.scorer_env``), else in the project's:

    python -I fresh_process_check.py SUBMISSION_DIR INPUTS.npz OUT.npz SFREQ N_ONE

As the start kit's scoring script: a new ``Submission(SFREQ, torch.device(...))`` per
challenge, each model put in eval mode, and windows fed one at a time, in order, through
``model.forward`` under ``torch.inference_mode()``, keeping ``[0][0]``. The first N_ONE
windows of INPUTS.npz's ``windows`` go that way (timed with one CPU thread, with torch's
default threads and on the GPU when there is one); every array also goes through in
batches, for the comparison with the project's own predictions. OUT.npz holds the
predictions, OUT.npz's name with ``.json`` the environment and the timings.

``-I`` keeps the working directory and this file's folder off ``sys.path``; the project's
package is blocked too, so a submission that needs it fails here, not on the scorer. The
file runs under Python 3.10 and torch 2.2, the scorer's; ``overnight.champion.compare``
imports ``time_batch_one`` from it.
"""

import importlib.abc
import json
import platform
import sys
import time

_BATCH = 256
_WARM_UP = 2  # calls before the clock starts: the first ones allocate


class _BlockProject(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "overnight" or name.startswith("overnight."):
            raise ImportError("submission.py must not import the overnight project")
        return None


def predict_batched(model, x):
    """(B,) float64 predictions of ``x`` (B, C, T) through ``model.forward``, in batches."""
    import torch

    with torch.inference_mode():
        out = torch.cat([model.forward(x[i:i + _BATCH]) for i in range(0, len(x), _BATCH)])
    if tuple(out.shape) != (len(x), 1):
        raise SystemExit(f"expected predictions of shape (B, 1), got {tuple(out.shape)}")
    return out.squeeze(1).double().cpu().numpy()


def predict_one_at_a_time(model, x, device):
    """The scorer's loop: each window alone, (1, C, T) float32 on ``device``, its
    ``[0][0]``; returns (predictions, seconds per window after the warm-up calls)."""
    import numpy as np
    import torch

    out = np.empty(len(x))
    with torch.inference_mode():
        for i in range(min(_WARM_UP, len(x))):
            model.forward(x[i:i + 1].to(device))
        _synchronize(device)
        start = time.perf_counter()
        for i in range(len(x)):
            y_pred = model.forward(x[i:i + 1].to(device))
            if i == 0 and tuple(y_pred.shape) != (1, 1):
                raise SystemExit(f"one window in, expected an output of shape (1, 1), got "
                                 f"{tuple(y_pred.shape)}: the scorer keeps y_pred[0][0]")
            out[i] = y_pred.detach().cpu().numpy()[0][0]
        _synchronize(device)
    return out, (time.perf_counter() - start) / max(len(x), 1)


def time_batch_one(model, x):
    """Milliseconds per window of the scorer's loop on the CPU, with one thread and with
    torch's default threads, and the default's thread count."""
    import torch

    default = torch.get_num_threads()
    timings = {}
    try:
        for key, threads in (("cpu_1_thread", 1), ("cpu_default_threads", default)):
            torch.set_num_threads(threads)
            timings[key] = 1e3 * predict_one_at_a_time(model, x, torch.device("cpu"))[1]
    finally:
        torch.set_num_threads(default)
    return {**timings, "default_threads": default}


def _synchronize(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _environment():
    import numpy as np
    import torch

    try:
        import braindecode
        braindecode_version = braindecode.__version__
    except ImportError:
        braindecode_version = None
    return {"python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "braindecode": braindecode_version,
            "executable": sys.executable}


def main() -> None:
    sys.meta_path.insert(0, _BlockProject())
    submission_dir, inputs_npz, out_npz, sfreq, n_one = sys.argv[1:6]
    sys.path.insert(0, submission_dir)
    import numpy as np
    import torch
    from submission import Submission

    sfreq = float(sfreq)
    sfreq = int(sfreq) if sfreq.is_integer() else sfreq  # the scorer passes SFREQ = 100
    cpu = torch.device("cpu")
    inputs = np.load(inputs_npz)
    windows = torch.from_numpy(inputs["windows"])
    sample = windows[:int(n_one)]
    model = Submission(sfreq, cpu).get_model_challenge_1().eval()
    out = {name: predict_batched(model, torch.from_numpy(inputs[name])) for name in inputs.files}
    out["one_at_a_time"], _ = predict_one_at_a_time(model, sample, cpu)
    timings = time_batch_one(model, sample)
    timings["gpu"] = None
    if torch.cuda.is_available():
        gpu = torch.device("cuda")
        on_gpu = Submission(sfreq, gpu).get_model_challenge_1().eval()
        timings["gpu"] = 1e3 * predict_one_at_a_time(on_gpu, sample, gpu)[1]
    challenge_2 = Submission(sfreq, cpu).get_model_challenge_2().eval()
    out["challenge_2"] = predict_batched(challenge_2, windows)
    out["challenge_2_one_at_a_time"], _ = predict_one_at_a_time(challenge_2, sample, cpu)
    np.savez(out_npz, **out)
    with open(out_npz[:-len(".npz")] + ".json", "w", encoding="utf-8") as f:
        json.dump({"environment": _environment(), "ms_per_window": timings,
                   "n_one_at_a_time": len(sample)}, f)


if __name__ == "__main__":
    main()
