"""Phase marks for the trial-overhead benchmark: off by default, one ordered file when on."""

import subprocess
import sys

from trainables.recipes import recipe
from trainables.timeline import TIMELINE_VARIABLE, mark, read
from trainables.train import train

TRAINING_PHASES = [
    "model.built",
    "data.ready",
    "epoch.start",
    "epoch.trained",
    "epoch.evaluated",
    "epoch.saved",
    "epoch.reported",
]


def test_marks_are_dropped_unless_a_timeline_file_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv(TIMELINE_VARIABLE, raising=False)
    monkeypatch.chdir(tmp_path)
    mark("anything")
    assert list(tmp_path.iterdir()) == []


def test_training_marks_its_phases_in_order(tmp_path, monkeypatch):
    timeline = tmp_path / "timeline.jsonl"
    monkeypatch.setenv(TIMELINE_VARIABLE, str(timeline))
    config = recipe(
        "digits", **{"epochs": 2, "data.limit": 64, "data.eval_limit": 64, "batch_size": 32}
    )
    train(config, lambda metrics, checkpoint: None, workdir=tmp_path / "work")
    entries = read(timeline)
    assert [entry["phase"] for entry in entries] == TRAINING_PHASES + TRAINING_PHASES[2:]
    assert [entry.get("epoch") for entry in entries if entry["phase"] == "epoch.reported"] == [1, 2]
    assert [entry["time"] for entry in entries] == sorted(entry["time"] for entry in entries)


def heavy_modules_after(module: str) -> list[str]:
    probe = (
        f"import sys, {module}; "
        "print(','.join(sorted({'torchvision', 'sklearn'} & set(sys.modules))))"
    )
    return subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()


def test_the_module_train_unpickles_imports_neither_torchvision_nor_sklearn():
    """Train's controller imports ``trainables.ray_trainable`` to unpickle the loop: it stays light
    (the workers import the science core inside the loop)."""
    assert heavy_modules_after("trainables.ray_trainable") == []


def test_dataset_parsers_are_imported_when_a_dataset_is_loaded():
    assert heavy_modules_after("trainables.data") == []
