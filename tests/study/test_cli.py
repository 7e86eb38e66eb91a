"""The ``study`` command's input: training and sweep flags, YAML files and overrides, and the
tracking credentials a sweep takes from the environment (checked against a local HTTP server
that asks for basic auth; no Ray is started)."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import pickle
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from mlflow.exceptions import MlflowException

from study import lifecycle
from study_cli.commands import load_config, main, parse_overrides
from trainables.validation import ConfigError

USERNAME = "sweep-bot"
PASSWORD = "pa55-7f3e91c4"
API_PREFIX = "/api/"
HEALTH_PATH = "/health"
EXPERIMENT_ID = "1"
HTTP_OK, HTTP_UNAUTHORIZED, HTTP_NOT_FOUND = 200, 401, 404


def run_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "study_cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "epochs=0"], "epochs=0 is invalid: expected an integer in [1, inf)"),
        (
            ["--set", "views.family=overlap", "--set", "views.params.overlap=1.5"],
            "overlap.overlap=1.5",
        ),
        (["--set", "margin.k=-2"], "margin.k=-2"),
        (["--set", "data.dataset=imagenet"], "data.dataset='imagenet'"),
        (["--set", "novalue"], "--set='novalue'"),
        (["--recipe", "mnist"], "recipe='mnist'"),
    ],
)
def test_bad_input_exits_2_naming_the_field(args, message, capsys):
    assert main(["train", *args]) == 2
    assert message in capsys.readouterr().err


def test_yaml_file_and_overrides_layer_on_the_recipe(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        yaml.safe_dump({"views": {"family": "patch", "params": {"patch": 0.4}}, "epochs": 9})
    )
    config = load_config("digits", path, parse_overrides(["epochs=3", "margin.mode=fixed"]))
    assert (config.views.family, config.views.params, config.epochs, config.margin.mode) == (
        "patch",
        {"patch": 0.4},
        3,
        "fixed",
    )
    assert config.model.backbone == "small"
    with pytest.raises(ConfigError, match="--config"):
        load_config("digits", tmp_path / "missing.yaml", {})


def test_train_command_runs_and_prints_a_table(tmp_path):
    result = run_cli(
        "train",
        "--set",
        "epochs=1",
        "--set",
        "data.limit=128",
        "--set",
        "data.eval_limit=100",
        "--set",
        "views.size=16",
        "--out",
        str(tmp_path / "run"),
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert (
        lines[1].startswith("baselines (kNN top-1, same seed): untrained encoder ")
        and ", raw pixels " in lines[1]
    )
    final = float(lines[-2].split("knn_top1=")[1].split()[0])
    assert (
        lines[-1].startswith("against the baselines: ")
        and f"; best {final:.3f} = untrained " in lines[-1]
    )
    assert "knn_top1" in lines[2]
    epoch_row = lines[3].split()
    assert epoch_row[0] == "1" and 0 <= float(epoch_row[2]) <= 1
    assert (tmp_path / "run" / "epoch_0001" / "checkpoint.pt").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--space", "zoom"], "space='zoom'"),
        (["--space", "overlap", "--preset", "fig2a-overlap"], "exactly one of --space or --preset"),
        (["--preset", "fig9"], "preset='fig9'"),
        (["--space", "overlap", "--epochs", "0"], "epochs=0"),
        (["--space", "overlap", "--dataset", "mnist"], "dataset='mnist'"),
        (["--space", "overlap", "--set", "margin.k=-1"], "margin.k=-1"),
        (["--space", "overlap", "--name", "../../etc"], "name='../../etc'"),
        (["--space", "overlap", "--reduction-factor", "1"], "reduction_factor=1"),
        (["--space", "cutout", "--set", "views.size=4"], "views.size=4"),
        (
            ["--space", "overlap", "--grid", "--grid-only", "views.params.overlap=[0.35]"],
            "grid_only.views.params.overlap=0.35",
        ),
        (
            ["--space", "overlap", "--grid", "--grid-only", "views.params.patch=0.3"],
            "grid_only='views.params.patch'",
        ),
        (["--space", "overlap", "--grid-only", "views.params.overlap=0.3"], "only with a grid"),
        (["--space", "overlap", "--grid", "--grid-only", "oops"], "--grid-only='oops'"),
    ],
)
def test_bad_sweep_input_exits_2_before_any_cluster_work(args, message, capsys, tmp_path):
    import ray

    assert (
        main(
            [
                "run",
                *args,
                "--storage",
                str(tmp_path / "runs"),
                "--tracking-uri",
                f"sqlite:///{tmp_path / 'm.db'}",
            ]
        )
        == 2
    )
    assert message in capsys.readouterr().err
    assert not ray.is_initialized()
    assert not (tmp_path / "runs").exists() and not (tmp_path / "m.db").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epochs", "0"], "epochs=0"),
        (["--num-samples", "0"], "num_samples=0"),
        (["--reduction-factor", "1"], "reduction_factor=1"),
        (["--set", "data.limit=-3"], "data.limit=-3"),
        (["--set", "optim.base_lr=-1"], "optim.base_lr=-1"),
    ],
)
def test_bad_demo_budget_exits_2_before_any_cluster_work(args, message, capsys, tmp_path):
    import ray

    storage, database = tmp_path / "runs", tmp_path / "m.db"
    argv = ["demo", *args, "--storage", str(storage), "--tracking-uri", f"sqlite:///{database}"]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not ray.is_initialized()
    assert not storage.exists() and not database.exists()


def test_the_demos_budget_flags_change_only_the_budget(tmp_path):
    from study.prepare import prepare_study
    from study_cli.commands import DEMO, build_parser, demo_config

    def plan(*flags):
        args = build_parser().parse_args(["demo", "--storage", str(tmp_path), *flags])
        return demo_config(args), prepare_study(demo_config(args)).plan

    config, default = plan()
    assert {field: getattr(config, field) for field in DEMO} == DEMO
    assert default.epochs == 8, "the patterns-quick recipe's"
    smaller, cut = plan(
        *("--num-samples", "3", "--epochs", "2", "--grace-period", "1", "--reduction-factor", "3"),
        *("--set", "data.limit=64", "--set", "data.eval_limit=50"),
    )
    assert (smaller.num_samples, smaller.grace_period, smaller.reduction_factor) == (3, 1, 3)
    assert (cut.num_samples, cut.epochs) == (3, 2)
    assert (cut.base_config.data.limit, cut.base_config.data.eval_limit) == (64, 50)
    assert (smaller.space, smaller.dataset, smaller.max_concurrent_trials) == (
        DEMO["space"],
        DEMO["dataset"],
        DEMO["max_concurrent_trials"],
    )
    assert default.base_config.data.limit is None


def test_study_yaml_and_flags_combine(tmp_path):
    from study_cli.commands import build_parser, study_config

    path = tmp_path / "study.yaml"
    path.write_text(
        yaml.safe_dump(
            {"preset": "fig2b-patch-bundled", "epochs": 2, "overrides": {"data.limit": 64}}
        )
    )
    args = build_parser().parse_args(
        ["run", "--config", str(path), "--epochs", "3", "--set", "optim.base_lr=0.1"]
    )
    config = study_config(args)
    assert (config.preset, config.epochs) == ("fig2b-patch-bundled", 3)
    assert config.overrides == {"data.limit": 64, "optim.base_lr": 0.1}


def test_grid_only_keeps_the_matching_grid_points():
    from study.config import plan
    from study_cli.commands import build_parser, study_config

    args = build_parser().parse_args(
        [
            "run",
            "--preset",
            "fig4-cutout-bundled",
            "--grid-only",
            "views.params.fill=[zero]",
            "--grid-only",
            "seed=0",
        ]
    )
    study_plan = plan(study_config(args))
    points = [
        (point["views.params.hole"], point["views.params.fill"], point["seed"])
        for point in study_plan.points
    ]
    assert sorted(points) == [(0.3, "zero", 0), (0.5, "zero", 0)]
    assert study_plan.num_samples == 2
    enqueued = {tuple(sorted(point.items())) for point in study_plan.points}
    assert len(enqueued) == 2, "each kept point runs once"


def basic_auth(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


@dataclass
class Request:
    method: str
    path: str
    authorization: str | None
    body: str


@dataclass
class AuthCheckingServer:
    """What a tracking server behind basic auth sees: every request, with its Authorization
    header. The MLflow REST calls a sweep's entry point makes are answered; any API request
    without the expected credentials is refused with 401, as MLflow's basic-auth app does
    (``/health`` is open, as there)."""

    authorization: str
    requests: list[Request] = field(default_factory=list)
    uri: str = ""

    def answer(self, method: str, path: str, body: dict) -> tuple[int, dict]:
        endpoint = path.partition("?")[0].removeprefix("/api/2.0/mlflow/")
        if endpoint == "experiments/get-by-name":
            return HTTP_NOT_FOUND, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "none"}
        if endpoint == "experiments/create":
            return HTTP_OK, {"experiment_id": EXPERIMENT_ID}
        if endpoint == "runs/create":
            run_id = uuid.uuid4().hex
            info = {
                "run_id": run_id,
                "run_uuid": run_id,
                "experiment_id": EXPERIMENT_ID,
                "run_name": body.get("run_name", ""),
                "status": "RUNNING",
                "start_time": body.get("start_time", 0),
                "artifact_uri": f"mlflow-artifacts:/{EXPERIMENT_ID}/{run_id}/artifacts",
                "lifecycle_stage": "active",
            }
            return HTTP_OK, {"run": {"info": info, "data": {"tags": body.get("tags", [])}}}
        if endpoint == "runs/log-batch":
            return HTTP_OK, {}
        if endpoint == "runs/search":
            return HTTP_OK, {"runs": []}
        return HTTP_NOT_FOUND, {"error_code": "ENDPOINT_NOT_FOUND", "message": endpoint}

    @contextlib.contextmanager
    def serving(self) -> Iterator[AuthCheckingServer]:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def handle_one(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                text = self.rfile.read(length).decode() if length else ""
                authorization = self.headers.get("Authorization")
                recorder.requests.append(Request(self.command, self.path, authorization, text))
                if self.path == HEALTH_PATH:
                    status, payload = HTTP_OK, {"status": "OK"}
                elif authorization != recorder.authorization:
                    status, payload = HTTP_UNAUTHORIZED, {"error_code": "UNAUTHENTICATED"}
                else:
                    status, payload = recorder.answer(
                        self.command, self.path, json.loads(text) if text else {}
                    )
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = handle_one

            def log_message(self, *args) -> None:  # the test reads self.requests instead
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.uri = f"http://127.0.0.1:{server.server_port}"
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join()

    @property
    def api_requests(self) -> list[Request]:
        return [request for request in self.requests if request.path.startswith(API_PREFIX)]


class StoppedBeforeTune(Exception):
    """Raised where the sweep would start Tune: the entry point's own tracking writes are done."""


def run_until_tune(monkeypatch, args: list[str]) -> lifecycle.Sweep:
    """``study run ARGS`` up to the Tuner, without Ray: the local Ray session is a no-op, and the
    sweep is captured where it would be driven. Its tracking is pickled and unpickled, as Tune
    ships it to every trial, and the trial's first MLflow call (finding or creating its run) is
    made with it."""
    captured = []

    def capture(sweep, tuner_factory):
        captured.append(sweep)
        shipped = pickle.loads(pickle.dumps(sweep.tracking))
        shipped.trial_run("trial-0", "trial-0")
        raise StoppedBeforeTune

    monkeypatch.setattr(lifecycle, "ray_session", lambda address: contextlib.nullcontext())
    monkeypatch.setattr(lifecycle, "_run", capture)
    with pytest.raises(StoppedBeforeTune):
        main(["run", *args])
    (sweep,) = captured
    return sweep


def test_username_and_password_reach_the_tracking_server_and_nothing_else(
    monkeypatch, tmp_path, caplog, capsys
):
    """``MLFLOW_TRACKING_USERNAME`` and ``MLFLOW_TRACKING_PASSWORD`` from the environment go with
    every REST call of the entry point and of a trial (basic auth); the server refuses the same
    calls without them. Neither reaches a param, a tag, the sweep's files, its record, the
    pickled tracking Tune ships to trials, a log line or the console."""
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", USERNAME)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
    expected = basic_auth(USERNAME, PASSWORD)
    storage = tmp_path / "runs"
    with AuthCheckingServer(expected).serving() as server:
        args = ["--space", "overlap", "--storage", str(storage), "--tracking-uri", server.uri]
        sweep = run_until_tune(monkeypatch, [*args, "--name", "with-credentials"])
        calls = [
            (request.method, request.path.partition("?")[0]) for request in server.api_requests
        ]
        assert calls == [
            ("GET", "/api/2.0/mlflow/experiments/get-by-name"),
            ("POST", "/api/2.0/mlflow/experiments/create"),
            ("POST", "/api/2.0/mlflow/runs/create"),
            ("POST", "/api/2.0/mlflow/runs/log-batch"),
            ("POST", "/api/2.0/mlflow/runs/search"),
            ("POST", "/api/2.0/mlflow/runs/create"),
        ], "the experiment, the parent run and its params, then the trial's run"
        assert {request.authorization for request in server.api_requests} == {expected}
        assert any('"key": "space"' in request.body for request in server.api_requests), (
            "the sweep's settings went to the server as params"
        )

        monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
        refused_from = len(server.api_requests)
        with pytest.raises(MlflowException, match="UNAUTHENTICATED"):
            main(["run", *args, "--name", "without-credentials"])
        assert server.api_requests[refused_from].authorization != expected, (
            "the server checks the credentials: without the password it refuses"
        )

    encoded = expected.removeprefix("Basic ")
    written = {path: path.read_bytes() for path in storage.rglob("*") if path.is_file()}
    assert storage / "with-credentials" / "study.json" in written
    printed = capsys.readouterr()
    places = {
        **{
            f"request {index} ({request.method} {request.path})": request.path + request.body
            for index, request in enumerate(server.requests)
        },
        **{str(path): content.decode(errors="replace") for path, content in written.items()},
        "the pickled tracking": pickle.dumps(sweep.tracking).decode(errors="replace"),
        "the sweep's record": json.dumps(sweep.state.to_dict()),
        "the log": "\n".join(record.getMessage() for record in caplog.records),
        "stdout": printed.out,
        "stderr": printed.err,
    }
    leaked = [place for place, text in places.items() if PASSWORD in text or encoded in text]
    assert not leaked, f"the password is in {leaked}"
