#!/bin/sh
# Shared by docker/Dockerfile.*: install the project into the base image's Python and add
# the non-root user. The GPU images keep the torch they came with (ROCm or CUDA build):
# requirements-runtime.txt has no torch, and the build fails if the version changed.
# --cpu-torch installs the CPU wheel of the torch that requirements.txt pins, from TORCH_INDEX.
set -eu

apt-get update
# git: every output records the checkout's commit (overnight.provenance.code_version)
apt-get install --yes --no-install-recommends git
rm -rf /var/lib/apt/lists/*

if [ "${1:-}" = "--cpu-torch" ]; then
    # torch alone from TORCH_INDEX (the CPU build), then its dependencies from pip's index:
    # a mirror of the one wheel is enough, and PyPI's CUDA build of the same version is
    # never chosen in its place.
    torch_pin=$(grep '^torch==' requirements.txt)
    python -m pip install --no-deps --index-url "${TORCH_INDEX:?set TORCH_INDEX}" "$torch_pin"
    python -m pip install "$torch_pin"
fi
torch_before=$(python -c 'import torch; print(torch.__version__)')
python -m pip install -r requirements-runtime.txt
python -m pip install --no-deps .
# EEGNeX (optional, requirements-eegnex.txt): braindecode beside the image's own torch and
# torchaudio; without a torchaudio, the night shows the eegnex row as not run.
if python -c 'import torchaudio' 2>/dev/null; then
    python -m pip install "$(grep '^braindecode==' requirements-eegnex.txt)"
else
    echo "this image has no torchaudio: braindecode's EEGNeX will show as not run" >&2
fi
torch_after=$(python -c 'import torch; print(torch.__version__)')
if [ "$torch_before" != "$torch_after" ]; then
    echo "torch changed from $torch_before to $torch_after: the base image's build was replaced" >&2
    exit 1
fi
python -c 'import torch, overnight.training; print("torch", torch.__version__, "hip", torch.version.hip, "cuda", torch.version.cuda)'

# the image's own user; the runner replaces it with the caller's --user at run time
groupadd --gid 10001 overnight
useradd --uid 10001 --gid 10001 --no-log-init --create-home --shell /usr/sbin/nologin \
    overnight
