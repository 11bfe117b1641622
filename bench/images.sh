#!/usr/bin/env bash
# `make bench-images`: build times and sizes of both images, written to bench/results/images.md.
#   first:   `make images` with no image of this project in podman's storage: a cold build (--bases: the stand-in
#            bases too); with --warm nothing is removed and this is a fully cached build
#   rebuild: `make images` again after a one-line change in cpt_tasks (a comment in cpt_pipeline/steps.py)
# Works on a clone of HEAD in a temporary folder, so the work tree is never touched. Removes this project's images
# (localhost/cpt-*) and podman's dangling build layers first: the images are rebuilt by the time it ends.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
with_bases=false warm=false
case ${1:-} in --bases) with_bases=true ;; --warm) warm=true ;; "") ;; *) echo "usage: $0 [--bases|--warm]" >&2; exit 2 ;; esac
export CONTAINERS_CONF=${CONTAINERS_CONF:-$root/docker/podman/containers.conf}
out=bench/results/images.md
clone=$(mktemp -d /tmp/cpt-bench-images.XXXXXX)
trap 'rm -rf "$clone"' EXIT
git clone -q "$root" "$clone"
if ! $warm; then
  for image in $(podman images --format '{{.Repository}}:{{.Tag}}' | grep '^localhost/cpt-' || true); do
    case $image in localhost/cpt-base-*) $with_bases || continue ;; esac
    podman rmi --force "$image" > /dev/null
  done
  podman image prune --force > /dev/null
fi
seconds() { local start; start=$(date +%s.%N); "$@" > "$clone/build.log" 2>&1 || { tail -30 "$clone/build.log"; exit 1; }
            echo "$(date +%s.%N) - $start" | bc | xargs printf '%.0f'; }
cold=$(seconds make -C "$clone" images)
echo "# one-line code change for the rebuild benchmark" >> "$clone/cpt_pipeline/steps.py"
rebuild=$(seconds make -C "$clone" images)
size() { podman image inspect --format '{{.Size}}' "$1" | awk '{printf "%.2f GB (%.0f bytes)", $1/1e9, $1}'; }
load=$(cut -d' ' -f1 /proc/loadavg)
{
  echo "# Image builds"
  echo
  echo "Written by \`bench/images.sh${1:+ $1}\` (\`make bench-images\`) on $(date -u '+%Y-%m-%d %H:%M UTC'), code $(git rev-parse --short HEAD)."
  echo
  echo "- Machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GB RAM, podman $(podman version --format '{{.Client.Version}}'), overlay storage, runc; 1-min load at the end $load (other work on the machine slows builds)"
  if $warm; then
    echo "- First: every layer cached (\`--warm\`: nothing removed before)"
  else
    echo "- First: cold, no localhost/cpt-* image and no dangling layer in podman's storage$($with_bases && echo ', stand-in bases included (mmdebstrap + Airflow 3.3.2 install)' || echo '; the stand-in bases (docker/bases/) were cached')"
  fi
  echo "- Rebuild: after appending one comment line to cpt_pipeline/steps.py"
  echo
  echo "| build | wall s |"
  echo "| --- | ---: |"
  echo "| \`make images\`, $($warm && echo 'all layers cached' || echo cold) | $cold |"
  echo "| \`make images\`, after a one-line code change | $rebuild |"
  echo
  echo "| image | size |"
  echo "| --- | ---: |"
  for image in localhost/cpt-tasks:dev localhost/cpt-airflow:dev $(podman images --format '{{.Repository}}:{{.Tag}}' | grep '^localhost/cpt-base-'); do
    echo "| \`$image\` | $(size "$image") |"
  done
} > "$out"
cat "$out"
make images > /dev/null 2>&1  # the work tree's images again (cached layers: seconds)
