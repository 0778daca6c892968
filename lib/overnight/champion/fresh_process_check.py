"""Import a submission the way the scorer does, in a fresh interpreter, and save what its
models predict. Run as a script by ``overnight.champion.submission.check_in_fresh_process``:

    python -I fresh_process_check.py SUBMISSION_DIR INPUTS.npz OUT.npz SFREQ

Every array of INPUTS.npz (windows, B x 129 x 200) goes through the Challenge 1 model, the
``windows`` array also through the Challenge 2 model, as the start kit's scoring script
calls both in one run. ``-I`` keeps the working directory and this file's folder off
``sys.path``; the project's package is blocked too, so a submission that needs it fails here,
not on the scorer.
"""

import importlib.abc
import sys


class _BlockProject(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "overnight" or name.startswith("overnight."):
            raise ImportError("submission.py must not import the overnight project")
        return None


def _predict(model, x):
    import torch

    with torch.inference_mode():
        out = torch.cat([model(x[i:i + 256]) for i in range(0, len(x), 256)])
    if tuple(out.shape) != (len(x), 1):
        raise SystemExit(f"expected predictions of shape (B, 1), got {tuple(out.shape)}")
    return out.squeeze(1).double().numpy()


def main() -> None:
    sys.meta_path.insert(0, _BlockProject())
    submission_dir, inputs_npz, out_npz, sfreq = sys.argv[1:5]
    sys.path.insert(0, submission_dir)
    import numpy as np
    import torch
    from submission import Submission

    inputs = np.load(inputs_npz)
    submission = Submission(float(sfreq), "cpu")
    model = submission.get_model_challenge_1()
    out = {name: _predict(model, torch.from_numpy(inputs[name])) for name in inputs.files}
    out["challenge_2"] = _predict(submission.get_model_challenge_2(),
                                  torch.from_numpy(inputs["windows"]))
    np.savez(out_npz, **out)


if __name__ == "__main__":
    main()
