#!/bin/sh
# make test-image: Podman and what the image test needs, installed where they are missing
# and the caller is root on Debian or Ubuntu (as .ci/run installs PostgreSQL). Elsewhere it
# says what to install and leaves the test to skip.
set -eu

packages="podman buildah runc mmdebstrap containernetworking-plugins catatonit uidmap iptables"
if command -v podman >/dev/null && command -v mmdebstrap >/dev/null; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "tests/image needs podman and mmdebstrap: install them (Debian: sudo apt-get install $packages)" >&2
    exit 0
fi
apt-get update -qq
# shellcheck disable=SC2086  # one word per package
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages >/dev/null
podman --version
