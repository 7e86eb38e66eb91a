import os

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci", parent=settings.get_profile("default"), derandomize=True, max_examples=120
)
settings.load_profile("ci" if os.environ.get("CI") else "default")

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def search_sweep(tmp_path_factory):
    """A real TPE + ASHA sweep over the overlap space (see tests/real_sweeps.py)."""
    import ray

    from tests.real_sweeps import search_sweep as run

    assert not ray.is_initialized()
    result = run(tmp_path_factory.mktemp("search-sweep"))
    assert not ray.is_initialized(), "run_study shuts down the Ray it started"
    return result


@pytest.fixture(scope="session")
def figure_sweeps(tmp_path_factory):
    """One small real grid sweep per paper figure, sharing one MLflow store and storage root."""
    from tests.real_sweeps import figure_sweeps as run

    return run(tmp_path_factory.mktemp("figure-sweeps"))


@pytest.fixture
def s3():
    """A storage URI on a real S3 API served on 127.0.0.1 (see tests/s3.py)."""
    from tests.s3 import s3_server

    with s3_server() as uri:
        yield uri
