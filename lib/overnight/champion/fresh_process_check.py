"""Import a submission the way the scorer does, in a fresh interpreter, and save its
predictions. Run as a script by ``overnight.champion.submission.check_in_fresh_process``:

    python -I fresh_process_check.py SUBMISSION_DIR WINDOWS.npy OUT.npy SFREQ

``-I`` keeps the working directory and this file's folder off ``sys.path``; the project's
package is blocked too, so a submission that needs it fails here, not on the scorer.
"""

import importlib.abc
import sys


class _BlockProject(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "overnight" or name.startswith("overnight."):
            raise ImportError("submission.py must not import the overnight project")
        return None


def main() -> None:
    sys.meta_path.insert(0, _BlockProject())
    submission_dir, windows_npy, out_npy, sfreq = sys.argv[1:5]
    sys.path.insert(0, submission_dir)
    import numpy as np
    import torch
    from submission import Submission

    model = Submission(float(sfreq), "cpu").get_model_challenge_1()
    x = torch.from_numpy(np.load(windows_npy))
    with torch.inference_mode():
        out = torch.cat([model(x[i:i + 256]) for i in range(0, len(x), 256)])
    if tuple(out.shape) != (len(x), 1):
        raise SystemExit(f"expected predictions of shape (B, 1), got {tuple(out.shape)}")
    np.save(out_npy, out.squeeze(1).double().numpy())


if __name__ == "__main__":
    main()
