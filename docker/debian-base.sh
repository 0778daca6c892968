#!/bin/sh
# Base images without a registry: mmdebstrap writes a Debian bookworm root file system from
# a Debian mirror, with the host's own CA certificates (an HTTPS proxy's) trusted inside,
# the engine imports it, and docker/Dockerfile.debian-python adds Python on top.
#   docker/debian-base.sh [ENGINE]     ENGINE: podman (default) or docker
# Makes localhost/debian-base:bookworm and localhost/debian-python:bookworm; then
#   make image ENGINE=podman BASE_IMAGE=localhost/debian-python:bookworm
# Needs mmdebstrap (apt-get install mmdebstrap). DEBIAN_MIRROR overrides the mirror,
# DEBIAN_BASE_IMAGE and DEBIAN_PYTHON_IMAGE the two tags.
set -eu

engine=${1:-podman}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
base=${DEBIAN_BASE_IMAGE:-localhost/debian-base:bookworm}
python_base=${DEBIAN_PYTHON_IMAGE:-localhost/debian-python:bookworm}

command -v mmdebstrap >/dev/null || { echo "mmdebstrap not found: apt-get install mmdebstrap" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The hook runs on the host with the new root as $1: what update-ca-certificates adds there
# is what pip inside the image trusts.
mmdebstrap --variant=minbase --include=ca-certificates \
    --customize-hook='if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
        cp /usr/local/share/ca-certificates/*.crt "$1/usr/local/share/ca-certificates/"
        chroot "$1" update-ca-certificates; fi' \
    bookworm "$tmp/base.tar" "$mirror"
"$engine" import "$tmp/base.tar" "$base"
"$engine" build --file docker/Dockerfile.debian-python --build-arg "DEBIAN_IMAGE=$base" \
    --tag "$python_base" .
echo "built $base and $python_base"
