import os
import shutil
import sys

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

# Under pytest-xdist (`make test-fast`, and the first half of `make test`) each worker gets one
# thread, so that the workers share the cores instead of fighting for them.
torch.set_num_threads(
    1 if os.environ.get("PYTEST_XDIST_WORKER") else max(1, min(2, os.cpu_count() or 1))
)

SHARED_RAY = "local_ray"
"""The fixture a test (or one of its fixtures) asks for to run its sweeps on the session's Ray."""
# Set by `make test-fast`: a test that starts Ray in this process without the `ray` mark fails.
WITHOUT_RAY = "STUDY_TESTS_WITHOUT_RAY"


def uses_shared_ray(item: pytest.Item) -> bool:
    return SHARED_RAY in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(config, items):
    """Mark the tests on the shared Ray `ray`, and run their modules first, one after another, so
    that it starts once; the modules that start a Ray of their own follow (never two at once)."""
    shared_modules = set()
    for item in items:
        if uses_shared_ray(item):
            item.add_marker(pytest.mark.ray)
            shared_modules.add(item.module.__name__)
    items.sort(key=lambda item: item.module.__name__ not in shared_modules)


class SharedRay:
    """The local Ray the shared sweeps run on: started for the first test that asks for it, and
    shut down before any other test (``run_study`` leaves a Ray it did not start running)."""

    started = False

    @classmethod
    def start(cls) -> None:
        import ray

        if not ray.is_initialized():
            ray.init(include_dashboard=True, dashboard_host="127.0.0.1", configure_logging=False)
            cls.started = True

    @classmethod
    def stop(cls) -> None:
        if cls.started and "ray" in sys.modules:
            sys.modules["ray"].shutdown()
        cls.started = False


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if uses_shared_ray(item):
        SharedRay.start()
    else:
        SharedRay.stop()


def pytest_sessionfinish(session, exitstatus):
    SharedRay.stop()


def pytest_configure(config):
    if os.environ.get(WITHOUT_RAY):
        import ray

        def refuse(*args, **kwargs):
            raise RuntimeError(
                f"this test starts Ray: mark it @pytest.mark.ray ({WITHOUT_RAY} is set)"
            )

        ray.init = refuse


@pytest.fixture(scope="session")
def local_ray():
    """Declares that the test's sweeps run on the session's local Ray (see :class:`SharedRay`)."""


@pytest.fixture(scope="session")
def demo_run(local_ray, tmp_path_factory):
    """``study demo`` with a test's budget: a real TPE + ASHA sweep over the overlap space, its
    printed summary and its report (see tests/real_sweeps.py)."""
    import ray

    from tests.real_sweeps import search_sweep as run

    demo = run(tmp_path_factory.mktemp("search-sweep"))
    assert ray.is_initialized(), "run_study leaves a Ray it did not start running"
    return demo


@pytest.fixture(scope="session")
def search_sweep(demo_run):
    """The demo's sweep, as :func:`study.run_study` returns it."""
    return demo_run.result


@pytest.fixture(scope="session")
def figure_sweeps(local_ray, tmp_path_factory):
    """One small real grid sweep per paper figure, sharing one MLflow store and storage root."""
    from tests.real_sweeps import figure_sweeps as run

    return run(tmp_path_factory.mktemp("figure-sweeps"))


@pytest.fixture(scope="session")
def mlflow_schema(tmp_path_factory):
    """An empty sqlite MLflow store with its schema built: MLflow's migrations take about 3 s, so
    they run once per session and each :func:`fresh_tracking_uri` starts as a copy of it."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-schema") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def fresh_tracking_uri(mlflow_schema, tmp_path):
    """The URI of a new, empty sqlite MLflow store of the test's own (under its ``tmp_path``)."""
    path = tmp_path / "mlflow.db"
    shutil.copyfile(mlflow_schema, path)
    return f"sqlite:///{path}"


@pytest.fixture
def s3():
    """A storage URI on a real S3 API served on 127.0.0.1 (see tests/s3.py)."""
    from tests.s3 import s3_server

    with s3_server() as uri:
        yield uri
