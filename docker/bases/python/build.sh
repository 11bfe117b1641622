#!/usr/bin/env bash
# Stand-in for python:3.11.x-slim-bookworm, built from Debian bookworm packages with mmdebstrap (no image
# registry is reachable on CI machines) and loaded with `podman import` as the image named by $1.
#
# What docker/tasks/Dockerfile (and the Airflow stand-in) rely on from the real base, reproduced here:
#   /usr/local/bin/python3.11 (+ python3, python) and pip (/usr/local/bin/pip, pip3) on the PATH, pip allowed to
#   install (no PEP 668 EXTERNALLY-MANAGED marker, like the python.org build), the standard library as python.org
#   ships it (venv/ensurepip, distutils, lib2to3 are separate Debian packages), CA certificates, netbase and
#   tzdata, LANG=C.UTF-8, glibc 2.36 (manylinux_2_28 wheels install). Differences that stay: Debian's 3.11.2
#   instead of 3.11.13, and its site layout (dist-packages) for packages installed outside a venv.
set -euo pipefail
tag=${1:?usage: build.sh IMAGE_TAG}
podman=${PODMAN:-podman}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mmdebstrap --quiet --variant=minbase --format=tar \
  --aptopt='APT::Install-Recommends "false"' \
  --include=ca-certificates,netbase,tzdata,python3.11,python3-pip,python3-venv,python3-distutils,python3-lib2to3 \
  --customize-hook='ln -sf /usr/bin/python3.11 "$1/usr/local/bin/python3.11"' \
  --customize-hook='ln -sf python3.11 "$1/usr/local/bin/python3"; ln -sf python3.11 "$1/usr/local/bin/python"' \
  --customize-hook='printf "#!/bin/sh\nexec /usr/local/bin/python3.11 -m pip \"\$@\"\n" > "$1/usr/local/bin/pip"' \
  --customize-hook='chmod 755 "$1/usr/local/bin/pip"; ln -sf pip "$1/usr/local/bin/pip3"' \
  --customize-hook='rm -f "$1"/usr/lib/python3.11/EXTERNALLY-MANAGED' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/apt/* "$1"/var/log/dpkg.log' \
  bookworm "$work/rootfs.tar" \
  "deb http://deb.debian.org/debian bookworm main" \
  "deb http://deb.debian.org/debian bookworm-updates main" \
  "deb http://deb.debian.org/debian-security bookworm-security main"
"$podman" import --quiet \
  --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PYTHON_VERSION=3.11' \
  --change 'CMD ["python3"]' \
  "$work/rootfs.tar" "$tag" > /dev/null
echo "$tag"
