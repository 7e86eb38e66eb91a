"""The sweep's experiment is tagged as model training (``mlflow.experimentKind``), against a real
sqlite MLflow store: at creation, on an existing experiment that has no kind, never over a kind
a user chose."""

import pytest
from mlflow.tracking import MlflowClient

from study.tracking import start_sweep
from study.vocabulary import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory):
    """One store for the module: creating its tables is most of the time each test would take."""
    return f"sqlite:///{tmp_path_factory.mktemp('experiment-kind') / 'mlflow.db'}"


def kind_of(tracking_uri: str, experiment_id: str) -> str | None:
    return MlflowClient(tracking_uri).get_experiment(experiment_id).tags.get(EXPERIMENT_KIND_TAG)


def test_the_vocabulary_names_mlflows_tag_and_kind():
    assert (EXPERIMENT_KIND_TAG, EXPERIMENT_KIND) == (
        "mlflow.experimentKind",
        "custom_model_development",
    )


def test_a_new_sweeps_experiment_is_created_with_the_kind(tracking_uri):
    tracking = start_sweep(tracking_uri, "new-sweep", "new-sweep", {"epochs": 1})
    assert kind_of(tracking_uri, tracking.experiment_id) == EXPERIMENT_KIND


@pytest.mark.parametrize("deleted", [False, True])
def test_an_existing_experiment_without_a_kind_gets_it(tracking_uri, deleted):
    """An older sweep's experiment, made before the tag (or deleted since), on the next run."""
    client = MlflowClient(tracking_uri)
    name = f"old-sweep-{deleted}"
    experiment_id = client.create_experiment(name, tags={"note": "made by an older study"})
    if deleted:
        client.delete_experiment(experiment_id)
    assert kind_of(tracking_uri, experiment_id) is None

    tracking = start_sweep(tracking_uri, name, name, {"epochs": 1})
    assert tracking.experiment_id == experiment_id
    experiment = client.get_experiment(experiment_id)
    assert experiment.lifecycle_stage == "active"
    assert experiment.tags == {
        "note": "made by an older study",
        EXPERIMENT_KIND_TAG: EXPERIMENT_KIND,
    }
    start_sweep(tracking_uri, name, f"{name}-again", {"epochs": 1})
    assert kind_of(tracking_uri, experiment_id) == EXPERIMENT_KIND


def test_a_kind_a_user_chose_is_kept(tracking_uri):
    client = MlflowClient(tracking_uri)
    experiment_id = client.create_experiment(
        "chosen-kind", tags={EXPERIMENT_KIND_TAG: "genai_development"}
    )
    tracking = start_sweep(tracking_uri, "chosen-kind", "chosen-kind", {"epochs": 1})
    assert tracking.experiment_id == experiment_id
    assert kind_of(tracking_uri, experiment_id) == "genai_development"
