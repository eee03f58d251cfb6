"""--evaluate / --export / --episodes / --video: what reaches the task's environment, and the
bad inputs the client refuses before anything is built."""

from __future__ import annotations

import pytest
import yaml


def env_of(spec_text: str) -> dict:
    return yaml.safe_load(spec_text)["workflow"]["tasks"][0]["environment"]


def test_evaluate_reaches_the_task_with_its_episodes(project, submit):
    result = submit("--evaluate", "-c", "runs:/abc/checkpoints/final", "--episodes", "5",
                    "--dry-run")
    assert result.code == 0, result.stderr
    env = env_of(result.stdout)
    assert (env["RUN_MODE"], env["EVAL_EPISODES"], env["VIDEO"]) == ("evaluate", "5", "0")
    assert env["CHECKPOINT_URI"] == "runs:/abc/checkpoints/final"
    assert env["TASK"] == ""  # no -t: the container takes the checkpoint's task


def test_evaluate_keeps_a_task_given_and_passes_video(project, submit):
    result = submit("--evaluate", "-c", "runs:/abc/checkpoints/final", "-t", "HalfCheetah-v5",
                    "--video", "--dry-run")
    assert result.code == 0, result.stderr
    env = env_of(result.stdout)
    assert (env["TASK"], env["VIDEO"], env["EVAL_EPISODES"]) == (
        "HalfCheetah-v5", "1", "10")


def test_export_and_training_defaults(project, submit):
    exported = env_of(submit("--export", "-c", "models:/policy/3", "--dry-run").stdout)
    assert exported["RUN_MODE"] == "export"
    trained = env_of(submit("--dry-run").stdout)
    assert (trained["RUN_MODE"], trained["VIDEO"]) == ("train", "0")
    assert trained["TASK"] == "Isaac-Velocity-Rough-Anymal-C-v0"


def test_run_mode_from_the_environment(project, submit, monkeypatch):
    monkeypatch.setenv("RUN_MODE", "evaluate")
    monkeypatch.setenv("EVAL_EPISODES", "3")
    env = env_of(submit("-c", "runs:/abc/checkpoints/final", "--dry-run").stdout)
    assert (env["RUN_MODE"], env["EVAL_EPISODES"]) == ("evaluate", "3")


@pytest.mark.parametrize(("argv", "phrase"), [
    (["--evaluate"], "--evaluate needs a checkpoint: pass -c/--checkpoint-uri"),
    (["--export"], "--export needs a checkpoint"),
    (["--evaluate", "-c", "runs:/a/b", "--episodes", "0"], "--episodes must be a positive"),
    (["--evaluate", "--export", "-c", "runs:/a/b"], "not allowed with argument"),
])
def test_bad_evaluate_input_is_one_line_and_exit_2(project, submit, argv, phrase):
    result = submit(*argv, "--dry-run")
    assert result.code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and phrase in lines[0], result.stderr
    assert "Traceback" not in result.stderr
