#!/usr/bin/env bash
# Print the tag of a stand-in base image, building it first when no image of the current recipe exists.
# usage: docker/bases/ensure.sh python|airflow   (from the repository root; PODMAN and BUILD_FLAGS from make)
# The tag is a hash of the recipe (the files below), so a base is rebuilt only when its recipe changes.
set -euo pipefail
podman=${PODMAN:-podman}
build_flags=${BUILD_FLAGS:-}
recipe_tag() {  # recipe_tag NAME FILE... -> localhost/cpt-base-NAME:<hash of the files>
  local name=$1; shift
  echo "localhost/cpt-base-$name:$(cat "$@" | sha256sum | cut -c1-12)"
}
python_tag=$(recipe_tag python docker/bases/python/build.sh)
case ${1:?usage: ensure.sh python|airflow} in
  python)
    tag=$python_tag
    if ! $podman image exists "$tag"; then
      echo "building stand-in base $tag (mmdebstrap, Debian bookworm)" >&2
      PODMAN="$podman" docker/bases/python/build.sh "$tag" > /dev/null
    fi ;;
  airflow)
    tag=$(recipe_tag airflow docker/bases/python/build.sh docker/bases/airflow/Containerfile requirements/airflow.lock.txt)
    if ! $podman image exists "$tag"; then
      "$0" python > /dev/null
      echo "building stand-in base $tag (Airflow 3.3.2 with requirements/airflow.lock.txt as constraints)" >&2
      # shellcheck disable=SC2086
      $podman build $build_flags --build-arg PYTHON_IMAGE="$python_tag" -f docker/bases/airflow/Containerfile \
        -t "$tag" . >&2
    fi ;;
  *) echo "unknown base: $1 (python or airflow)" >&2; exit 2 ;;
esac
echo "$tag"
