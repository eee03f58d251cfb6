"""Exit codes and signals inside the Isaac Sim process, per Isaac Lab release.

``python -m training.launch`` runs as a subprocess with each release's real ``isaaclab`` wheel
on the path and Isaac Sim's app played by ``support/isaacsim_standin`` (closing the app ends
the process with 0; 2.x AppLauncher's SIGTERM handler closes it; 3.0's atexit hook closes Kit
with 0). With ``isaaclab`` importable the launcher starts the app for every task, as Isaac
Lab's scripts start AppLauncher first, so InvertedPendulum-v5 trains inside the stand-in
"Isaac Sim process". Every README exit code must arrive intact; a signal mid-training (SIGTERM
on 2.x, SIGINT on 3.0) stores a
checkpoint and exits 75, and the retry with the same WORKFLOW_ID resumes from it.
A real ``mlflow server`` on 127.0.0.1 (one for the module).
"""

from __future__ import annotations

import re
import signal
import uuid
from pathlib import Path

import pytest
from launcher_runs import (
    assert_clean_failure,
    background_launcher,
    launcher_env,
    run_launcher,
    train_args,
)
from mlflow import MlflowClient
from support.isaaclab_releases import RELEASES, env_for_release
from support.mlflow_server import MlflowServer, not_mlflow_server

pytestmark = pytest.mark.slow

RUN_STARTED = re.compile(r"^run (\w+): ")


def _app_started(output: str, release: str) -> bool:
    return f"[isaacsim-standin {release}] app started" in output


def _env(release: str, tracking_uri: str | None, tmp_path: Path, **extra: str) -> dict[str, str]:
    base = launcher_env(tracking_uri, tmp_path / "out", EXPERIMENT_NAME=f"app-{release}",
                        **extra)
    return env_for_release(release, base)


@pytest.mark.parametrize("release", RELEASES)
def test_every_exit_code_survives_the_app(release: str, mlflow_server: MlflowServer,
                                          tmp_path: Path) -> None:
    # 2: bad input (refused before the app starts: nothing of Isaac Sim is involved)
    bad = run_launcher(_env(release, mlflow_server.url, tmp_path), *train_args(2),
                       "--backend", "no-such-backend", cwd=tmp_path)
    assert_clean_failure(bad, 2, "unknown backend")
    no_uri = run_launcher(_env(release, mlflow_server.url, tmp_path), *train_args(2),
                          "--checkpoint-mode", "resume", cwd=tmp_path)
    assert_clean_failure(no_uri, 2, "CHECKPOINT_URI")

    # 7: an unusable checkpoint, found once the app is up (started with cameras, as asked)
    garbage = tmp_path / "model_3.pt"
    garbage.write_bytes(b"not a checkpoint")
    unusable = run_launcher(_env(release, mlflow_server.url, tmp_path, ENABLE_CAMERAS="true"),
                            *train_args(2),
                            "--checkpoint-uri", str(garbage), "--checkpoint-mode", "warm-start",
                            cwd=tmp_path)
    assert _app_started(unusable.stderr, release), unusable.stderr
    assert "enable_cameras=True" in unusable.stderr
    assert_clean_failure(unusable, 7, "not a readable checkpoint")

    # 5: training failed (the tracking URI is not an MLflow server)
    with not_mlflow_server() as wrong_service:
        failed = run_launcher(_env(release, wrong_service, tmp_path), *train_args(2),
                              cwd=tmp_path)
    assert _app_started(failed.stderr, release), failed.stderr
    assert failed.returncode == 5, failed.stdout + failed.stderr


# 2.x: AppLauncher's SIGTERM handler would close the app (exit 0); 3.0 leaves SIGTERM alone
# but makes SIGINT a KeyboardInterrupt and closes Kit with 0 at exit.
@pytest.mark.parametrize(("release", "signum"), [
    ("2.2", signal.SIGTERM), ("2.3", signal.SIGTERM), ("3.0", signal.SIGINT)])
def test_a_signal_mid_training_exits_75_and_the_retry_resumes(
        release: str, signum: int, mlflow_server: MlflowServer, tmp_path: Path) -> None:
    env = _env(release, mlflow_server.url, tmp_path, WORKFLOW_ID=f"wf-{uuid.uuid4().hex[:8]}")
    with background_launcher(env, *train_args(1000, "--save-interval", "500"),
                             cwd=tmp_path) as launcher:
        run_id = launcher.wait_for(RUN_STARTED, 120)[1]
        launcher.wait_for("^it 2/", 120)
        launcher.process.send_signal(signum)
        assert launcher.finish(120) == 75, launcher.output
    assert _app_started(launcher.output, release), launcher.output
    stopped = re.search(r"^stopped at iteration (\d+): model_(\d+)\.pt stored",
                        launcher.output, re.MULTILINE)
    assert stopped, launcher.output
    iteration = int(stopped[1])
    client = MlflowClient(mlflow_server.url)
    stored = {Path(f.path).name for f in client.list_artifacts(run_id, "checkpoints")}
    assert f"model_{iteration}.pt" in stored

    # The rescheduled attempt (same WORKFLOW_ID) continues the run and trains to the end: 0.
    retry = run_launcher(env, *train_args(iteration + 2), cwd=tmp_path)
    assert retry.returncode == 0, retry.stdout + retry.stderr
    assert _app_started(retry.stderr, release), retry.stderr
    assert f"run {run_id}:" in retry.stdout
    final = {Path(f.path).name for f in client.list_artifacts(run_id, "checkpoints/final")}
    assert f"model_{iteration + 2}.pt" in final
    assert client.get_run(run_id).info.status == "FINISHED"
