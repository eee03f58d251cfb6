"""The RSL-RL backend under rsl-rl 2.3.3, 3.0.1 and 5.5.1: real training, tiny.

Each version runs one scenario script in its own subprocess (one process can import one
rsl_rl): InvertedPendulum-v5, 4 envs, 8 steps per env, save every 2 iterations. The scenario
(the ``__main__`` part of this file) trains from scratch to 6, resumes to 10, warm-starts,
resumes when already at 10, stops early on request, and writes what it saw as JSON; the tests
below assert on it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from support.rslrl_versions import RSL_RL_VERSIONS, run_python

REQUIRED_METRICS = {
    "Train/mean_reward",
    "Train/mean_episode_length",
    "Loss/learning_rate",
    "Loss/surrogate",
    "Loss/entropy",
    "Policy/mean_noise_std",
    "Perf/total_fps",
    "Perf/iteration_time",
    "Episode/reward_survive",  # InvertedPendulum's per-step info, averaged by the runner
}
EXPECTED_FORMAT = {"2.3.3": "rsl_rl-2", "3.0.1": "rsl_rl-2", "5.5.1": "rsl_rl-5"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory: pytest.TempPathFactory):
    """Run the scenario once per version (on demand), cached for the module."""
    results: dict[str, dict[str, Any]] = {}

    def run(version: str) -> dict[str, Any]:
        if version not in results:
            out = tmp_path_factory.mktemp(f"rsl_rl-{version}")
            proc = run_python(version, __file__, str(out))
            assert proc.returncode == 0, proc.stderr[-3000:]
            results[version] = json.loads((out / "scenario.json").read_text())
            results[version]["dir"] = str(out)
        return results[version]

    return run


@pytest.fixture(params=RSL_RL_VERSIONS, ids=lambda v: f"rsl_rl-{v}")
def scenario(request: pytest.FixtureRequest, scenarios) -> dict[str, Any]:
    result = scenarios(request.param)
    assert result["version"] == request.param  # the subprocess imported the intended rsl_rl
    return result


def _result(start: int, final: int, checkpoint: str, stopped: bool = False) -> dict[str, Any]:
    """A TrainResult as the scenario reports it."""
    return {"start": start, "final": final, "checkpoint": checkpoint, "stopped": stopped}


def test_from_scratch_saves_every_interval_and_at_the_end(scenario):
    scratch = scenario["scratch"]
    assert scratch["result"] == _result(0, 6, "model_6.pt")
    # Reported right after each file was complete on disk, holding the reported iteration.
    assert scratch["checkpoints"] == [
        [2, "model_2.pt", 2],
        [4, "model_4.pt", 4],
        [6, "model_6.pt", 6],
    ]
    assert sorted(p for p in scratch["files"] if p.endswith(".pt")) == [
        "model_2.pt",
        "model_4.pt",
        "model_6.pt",
    ]
    assert not [p for p in scratch["files"] if p.endswith(".partial")]


def test_metrics_every_iteration_with_the_common_names(scenario):
    iterations = scenario["scratch"]["iterations"]
    assert [it for it, _ in iterations] == [0, 1, 2, 3, 4, 5]
    for it, names in iterations:
        missing = REQUIRED_METRICS - set(names)
        assert not missing, f"iteration {it} lacks {sorted(missing)}"
        assert not [name for name in names if name.endswith("/time")]


def test_rsl_rl_console_block_is_off(scenario):
    assert "Learning iteration" not in scenario["stdout"]


def test_resume_continues_at_6_with_the_saved_optimizer(scenario):
    resume = scenario["resume"]
    assert resume["loaded_iteration"] == 6
    assert resume["optimizer_equal_to_file"] is True
    assert resume["optimizer_steps"] > 0
    assert [it for it, _ in resume["iterations"]] == [6, 7, 8, 9]
    assert [c[:2] for c in resume["checkpoints"]] == [[8, "model_8.pt"], [10, "model_10.pt"]]
    assert resume["result"] == _result(6, 10, "model_10.pt")


def test_warm_start_begins_at_0_with_the_checkpoint_weights_and_a_fresh_optimizer(scenario):
    warm = scenario["warm"]
    assert warm["loaded_iteration"] == 0
    assert warm["weights_equal_to_file"] is True
    assert warm["optimizer_state_empty"] is True
    assert [it for it, _ in warm["iterations"]] == [0, 1]
    assert warm["result"] == _result(0, 2, "model_2.pt")


def test_resume_when_already_at_max_trains_nothing(scenario):
    done = scenario["already_done"]
    assert done["result"] == _result(10, 10, "model_10.pt")
    assert done["iterations"] == [] and done["checkpoints"] == [] and done["files"] == []


def test_stop_request_saves_and_returns_early(scenario):
    stop = scenario["stop"]
    assert stop["result"] == _result(0, 3, "model_3.pt", stopped=True)
    assert [c[:2] for c in stop["checkpoints"]] == [[2, "model_2.pt"], [3, "model_3.pt"]]


def test_checkpoint_format_is_the_installed_versions(scenario):
    assert scenario["format"] == EXPECTED_FORMAT[scenario["version"]]
    assert scenario["inspected"] == {"iteration": 6, "format": scenario["format"]}


def test_truncated_checkpoint_is_refused_with_a_clear_line(scenario):
    message = scenario["truncated_error"]
    assert message.startswith(f"{scenario['dir']}/truncated.pt is not a readable checkpoint")
    assert "expected an rsl-rl" in message and "\n" not in message


def test_checkpoint_of_another_task_is_refused_before_training(scenario):
    message = scenario["mismatch_error"]
    assert message.startswith(f"{scenario['dir']}/scratch/model_6.pt does not fit this task")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("writer", "reader"), [("2.3.3", "5.5.1"), ("5.5.1", "2.3.3")], ids=["2-to-5", "5-to-2"]
)
def test_checkpoint_of_the_other_major_format_is_refused(scenarios, writer, reader):
    checkpoint = Path(scenarios(writer)["dir"]) / "scratch" / "model_6.pt"
    code = (
        "import sys; from training.backends.rsl_rl import inspect_checkpoint\n"
        "from training.backends.base import CheckpointError\n"
        f"try: inspect_checkpoint({str(checkpoint)!r})\n"
        "except CheckpointError as e: print(e); sys.exit(0)\n"
        "sys.exit('accepted')\n"
    )
    proc = run_python(reader, "-c", code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    message = proc.stdout.strip()
    found, expected = ("rsl-rl 2.x/3.x", "rsl-rl 4.x/5.x")[:: 1 if writer == "2.3.3" else -1]
    assert f"was written by {found}" in message
    assert f"rsl-rl {reader} loads only {expected}" in message


def test_3_0_1_reads_a_2_3_3_checkpoint(scenarios):
    checkpoint = Path(scenarios("2.3.3")["dir"]) / "scratch" / "model_6.pt"
    code = (
        "from training.backends.rsl_rl import inspect_checkpoint\n"
        f"print(inspect_checkpoint({str(checkpoint)!r}).iteration)\n"
    )
    proc = run_python("3.0.1", "-c", code)
    assert proc.returncode == 0 and proc.stdout.strip() == "6", proc.stderr[-2000:]


# --- the scenario, run in a subprocess: python test_backend.py OUT_DIR --------------------------


def _scenario(out: Path) -> None:
    import contextlib
    import io

    import torch
    from support.state_dicts import deep_equal

    from training.backends import rsl_rl as backend
    from training.backends import rsl_rl_compat as compat
    from training.backends.base import CheckpointError, TrainHooks
    from training.envs import make_env

    handle = make_env("InvertedPendulum-v5", backend=backend, num_envs=4, seed=3, device="cpu")
    handle.agent_cfg = dict(handle.agent_cfg, num_steps_per_env=8)

    def run(name: str, max_iterations: int, init=None, mode=None, stop_after=None) -> dict:
        seen: dict[str, Any] = {"iterations": [], "checkpoints": []}

        def on_checkpoint(it: int, path: Path) -> None:
            stored = torch.load(path, weights_only=False)["iter"]
            seen["checkpoints"].append([it, path.name, stored])

        hooks = TrainHooks(
            on_iteration=lambda it, m: seen["iterations"].append([it, sorted(m)]),
            on_checkpoint=on_checkpoint,
            should_stop=lambda: stop_after is not None and len(seen["iterations"]) >= stop_after,
        )
        log_dir = out / name
        result = backend.train(
            handle, log_dir=log_dir, device="cpu", max_iterations=max_iterations,
            save_interval=2, init=init, mode=mode, hooks=hooks,
        )
        seen["result"] = {
            "start": result.start_iteration,
            "final": result.final_iteration,
            "checkpoint": result.final_checkpoint.name if result.final_checkpoint else None,
            "stopped": result.stopped_early,
        }
        seen["files"] = sorted(p.name for p in log_dir.glob("*")) if log_dir.exists() else []
        return seen

    report: dict[str, Any] = {
        "version": backend.RSL_RL_VERSION,
        "format": backend.checkpoint_format(),
    }
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        report["scratch"] = run("scratch", 6)
    six = backend.inspect_checkpoint(out / "scratch" / "model_6.pt")
    report["inspected"] = {"iteration": six.iteration, "format": six.format}
    saved = torch.load(six.path, weights_only=False)

    def build(mode: str):
        return backend.build_runner(handle, log_dir=out / "probe", device="cpu", init=six,
                                    mode=mode)

    resumed = build("resume")
    optimizer = resumed.alg.optimizer.state_dict()
    report["resume"] = {
        "loaded_iteration": resumed.current_learning_iteration,
        "optimizer_equal_to_file": deep_equal(optimizer, saved["optimizer_state_dict"]),
        "optimizer_steps": int(next(iter(optimizer["state"].values()))["step"]),
    }
    with contextlib.redirect_stdout(stdout):
        report["resume"].update(run("resume", 10, init=six, mode="resume"))

    warm = build("warm-start")
    weights = compat.policy_state(warm)
    report["warm"] = {
        "loaded_iteration": warm.current_learning_iteration,
        "weights_equal_to_file": all(deep_equal(w, saved[key]) for key, w in weights.items()),
        "optimizer_state_empty": warm.alg.optimizer.state_dict()["state"] == {},
    }
    report["warm"].update(run("warm", 2, init=six, mode="warm-start"))

    ten = backend.inspect_checkpoint(out / "resume" / "model_10.pt")
    report["already_done"] = run("already_done", 10, init=ten, mode="resume")
    report["stop"] = run("stop", 10, stop_after=3)

    truncated = out / "truncated.pt"
    data = six.path.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    try:
        backend.inspect_checkpoint(truncated)
        report["truncated_error"] = None
    except CheckpointError as error:
        report["truncated_error"] = str(error)
    cheetah = make_env("HalfCheetah-v5", backend=backend, num_envs=2, seed=0, device="cpu")
    try:
        backend.build_runner(cheetah, log_dir=out / "probe", device="cpu", init=six,
                             mode="resume")
        report["mismatch_error"] = None
    except CheckpointError as error:
        report["mismatch_error"] = str(error)
    report["stdout"] = stdout.getvalue()
    (out / "scenario.json").write_text(json.dumps(report))


if __name__ == "__main__":
    _scenario(Path(sys.argv[1]))
