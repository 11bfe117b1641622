"""Every container test needs both images built (`make images`): fail at once, naming the fix, when not."""

from __future__ import annotations

import pytest
from containers import AIRFLOW_IMAGE, TASKS_IMAGE, podman


@pytest.fixture(scope="session", autouse=True)
def images_built():
    for image in (TASKS_IMAGE, AIRFLOW_IMAGE):
        if podman("image", "exists", image).returncode != 0:
            pytest.fail(f"image {image} not found: build it with `make images`")
