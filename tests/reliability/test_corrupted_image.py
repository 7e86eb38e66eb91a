"""A sweep on an image-folder dataset (COCO's on-disk layout) meets corrupted image files: the
trial skips them and trains on, and the count reaches MLflow and the Parquet results. Real local
Ray, a real MLflow store, real JPEG files of which two are cut to their first 20 bytes."""

import numpy as np
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from study import StudyConfig, run_study

pytestmark = pytest.mark.ray

EPOCHS = 2
IMAGES = 48
CORRUPTED = ("000000000007.jpg", "000000000031.jpg")


@pytest.fixture(scope="module")
def met(local_ray, tmp_path_factory):
    root = tmp_path_factory.mktemp("corrupted-image")
    folder = root / "data" / "coco" / "train2017"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(IMAGES):
        pixels = rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{index:012d}.jpg")
    for name in CORRUPTED:
        path = folder / name
        path.write_bytes(path.read_bytes()[:20])
    uri = f"sqlite:///{root / 'mlflow.db'}"
    config = StudyConfig(
        space="overlap",
        grid=True,
        grid_only={"views.params.overlap": [0.5]},
        epochs=EPOCHS,
        grace_period=EPOCHS,
        recipe="digits",
        name="corrupted",
        storage=str(root / "runs"),
        tracking_uri=uri,
        overrides={
            "data.dataset": "coco",
            "data.eval_dataset": "digits",
            "data.root": str(root / "data"),
            "data.eval_limit": 200,
            "batch_size": 16,
        },
    )
    return run_study(config), MlflowClient(uri)


def test_the_trial_trained_on_past_the_corrupted_files(met):
    result, _ = met
    (row,) = pq.read_table(result.trials_path).to_pylist()
    assert row["status"] == "FINISHED" and row["epochs_run"] == EPOCHS


def test_the_skipped_count_reaches_mlflow_and_the_parquet_results(met):
    result, client = met
    (run,) = result.tracking.child_runs()
    history = sorted(
        (point.step, point.value)
        for point in client.get_metric_history(run.info.run_id, "skipped_images")
    )
    assert history == [(epoch, len(CORRUPTED)) for epoch in range(1, EPOCHS + 1)], (
        "each file counted once"
    )
    assert (
        pq.read_table(result.epochs_path)["skipped_images"].to_pylist() == [len(CORRUPTED)] * EPOCHS
    )
