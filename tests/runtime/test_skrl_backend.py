"""The skrl backend under skrl 1.4.3 and 2.1.1: real training with skrl's own Runner, tiny.

Each version runs one scenario script in its own subprocess (one process can import one
skrl): InvertedPendulum-v5, 4 envs, 8 timesteps per iteration (``agent.rollouts``), save every
2 iterations. The scenario (the ``__main__`` part of this file) trains from scratch to 6,
resumes to 10, warm-starts, resumes when already at 10, stops early on request, offers an
rsl-rl checkpoint to skrl and an skrl one to rsl-rl, and writes what it saw as JSON; the tests
below assert on it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.skrl_versions import SKRL_VERSIONS, run_python

# Tracked by skrl in every iteration of this scenario, in both versions.
EVERY_ITERATION = {
    "Reward / Instantaneous reward (mean)",
    "Reward / Instantaneous reward (max)",
    "Reward / Instantaneous reward (min)",
    "Loss / Policy loss",
    "Loss / Value loss",
    "Policy / Standard deviation",
    "Learning / Learning rate",
}
# Tracked once episodes have ended (InvertedPendulum's first episodes end within a rollout).
EPISODE_METRICS = {
    "Reward / Total reward (mean)",  # the backend's REWARD_METRIC
    "Reward / Total reward (max)",
    "Episode / Total timesteps (mean)",
}
# skrl 2.x also times its loop.
TIMINGS_2X = {"Stats / Inference time (ms)", "Stats / Env stepping time (ms)",
              "Stats / Algorithm update time (ms)"}
DEFAULT_CFG = Path(__file__).resolve().parents[2] / "src/training/agents/skrl/default.yaml"
INITIAL_LEARNING_RATE = yaml.safe_load(DEFAULT_CFG.read_text())["agent"]["learning_rate"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory: pytest.TempPathFactory):
    """Run the scenario once per version (on demand), cached for the module."""
    results: dict[str, dict[str, Any]] = {}

    def run(version: str) -> dict[str, Any]:
        if version not in results:
            out = tmp_path_factory.mktemp(f"skrl-{version}")
            proc = run_python(version, __file__, str(out))
            assert proc.returncode == 0, proc.stderr[-3000:]
            results[version] = json.loads((out / "scenario.json").read_text())
            results[version]["dir"] = str(out)
            results[version]["stderr"] = proc.stderr
        return results[version]

    return run


@pytest.fixture(params=SKRL_VERSIONS, ids=lambda v: f"skrl-{v}")
def scenario(request: pytest.FixtureRequest, scenarios) -> dict[str, Any]:
    result = scenarios(request.param)
    assert result["version"] == request.param  # the subprocess imported the intended skrl
    return result


def _result(start: int, final: int, checkpoint: str, stopped: bool = False) -> dict[str, Any]:
    """A TrainResult as the scenario reports it."""
    return {"start": start, "final": final, "checkpoint": checkpoint, "stopped": stopped}


def test_from_scratch_saves_every_interval_and_at_the_end(scenario):
    scratch = scenario["scratch"]
    assert scratch["result"] == _result(0, 6, "model_6.pt")
    # Reported right after each file was complete on disk, holding the reported iteration and
    # timestep count (iterations x 8 rollouts).
    assert scratch["checkpoints"] == [
        [2, "model_2.pt", 2, 16],
        [4, "model_4.pt", 4, 32],
        [6, "model_6.pt", 6, 48],
    ]
    # Nothing else in the log dir: no skrl checkpoints, no TensorBoard files, no .partial.
    assert scratch["files"] == ["model_2.pt", "model_4.pt", "model_6.pt"]


def test_metrics_every_iteration_under_skrls_names(scenario):
    iterations = scenario["scratch"]["iterations"]
    assert [it for it, _ in iterations] == [0, 1, 2, 3, 4, 5]
    expected = EVERY_ITERATION | (TIMINGS_2X if scenario["version"].startswith("2.") else set())
    for it, names in iterations:
        missing = expected - set(names)
        assert not missing, f"iteration {it} lacks {sorted(missing)}"
    seen = set().union(*(names for _, names in iterations))
    assert EPISODE_METRICS <= seen
    assert scenario["reward_metric"] in seen


def test_skrl_console_output_is_off(scenario):
    # 1.4.3's Runner prints each model's generated source; skrl logs INFO lines; tqdm a bar.
    assert "Model (role)" not in scenario["stdout"]
    assert "[skrl:INFO]" not in scenario["stderr"]
    assert "it/s" not in scenario["stdout"] + scenario["stderr"]


def test_resume_continues_the_counter_and_the_optimizer(scenario):
    resume = scenario["resume"]
    assert resume["loaded_iteration"] == 6
    assert resume["optimizer_equal_to_file"] is True
    assert resume["optimizer_steps"] > 0
    # KLAdaptiveLR moved the rate during the first 6 iterations; resume continues from it.
    assert resume["learning_rate"] == resume["file_learning_rate"] != INITIAL_LEARNING_RATE
    assert [it for it, _ in resume["iterations"]] == [6, 7, 8, 9]
    assert [c[:2] for c in resume["checkpoints"]] == [[8, "model_8.pt"], [10, "model_10.pt"]]
    assert resume["result"] == _result(6, 10, "model_10.pt")


def test_warm_start_begins_at_0_with_the_weights_and_a_fresh_optimizer(scenario):
    warm = scenario["warm"]
    assert warm["loaded_iteration"] == 0
    assert warm["weights_equal_to_file"] is True  # policy, value and both preprocessors
    assert warm["optimizer_state_empty"] is True
    assert warm["learning_rate"] == INITIAL_LEARNING_RATE
    assert [it for it, _ in warm["iterations"]] == [0, 1]
    assert warm["result"] == _result(0, 2, "model_2.pt")


def test_from_scratch_has_other_weights_than_the_checkpoint(scenario):
    # What tells warm-start from scratch: only warm-start starts from the file's weights.
    assert scenario["scratch_weights_equal_to_file"] is False


def test_resume_when_already_at_max_trains_nothing(scenario):
    done = scenario["already_done"]
    assert done["result"] == _result(10, 10, "model_10.pt")
    assert done["iterations"] == [] and done["checkpoints"] == [] and done["files"] == []


def test_stop_request_saves_and_returns_early(scenario):
    stop = scenario["stop"]
    assert stop["result"] == _result(0, 3, "model_3.pt", stopped=True)
    assert [c[:2] for c in stop["checkpoints"]] == [[2, "model_2.pt"], [3, "model_3.pt"]]
    assert [it for it, _ in stop["iterations"]] == [0, 1, 2]


def test_checkpoint_format_and_inspection(scenario):
    assert scenario["format"] == "skrl"
    assert scenario["inspected"] == {"iteration": 6, "format": "skrl"}


def test_skrls_own_agent_file_loads_as_iteration_0(scenario):
    assert scenario["skrl_own_file"] == {
        "inspected": [0, "skrl"], "start": 0, "optimizer_equal_to_file": True}


def test_truncated_checkpoint_is_refused_with_a_clear_line(scenario):
    message = scenario["truncated_error"]
    assert message.startswith(f"{scenario['dir']}/truncated.pt is not a readable checkpoint")
    assert "expected an skrl" in message and "\n" not in message


def test_rsl_rl_checkpoint_is_refused_by_skrl_naming_both_formats(scenario):
    message = scenario["rsl_rl_to_skrl_error"]
    assert message.startswith(f"{scenario['dir']}/rsl_rl/model_1.pt was written by rsl-rl 4.x/5.x")
    assert "the skrl backend loads only an skrl (policy, value) checkpoint" in message
    assert "-b rsl_rl" in message and "\n" not in message


def test_skrl_checkpoint_is_refused_by_rsl_rl_naming_both_formats(scenario):
    message = scenario["skrl_to_rsl_rl_error"]
    assert message.startswith(f"{scenario['dir']}/scratch/model_6.pt was written by skrl")
    assert "the rsl_rl backend loads only rsl-rl 4.x/5.x" in message
    assert "-b skrl" in message and "\n" not in message


def test_checkpoint_of_another_task_is_refused_before_training(scenario):
    message = scenario["mismatch_error"]
    assert message.startswith(f"{scenario['dir']}/scratch/model_6.pt does not fit this task")
    assert "\n" not in message


@pytest.mark.parametrize(("writer", "reader"), [("1.4.3", "2.1.1"), ("2.1.1", "1.4.3")],
                         ids=["1-to-2", "2-to-1"])
def test_a_checkpoint_of_the_other_skrl_version_resumes_with_its_observation_statistics(
    scenarios, writer, reader
):
    # The observation preprocessor is state_preprocessor in 1.4.3, observation_preprocessor
    # in 2.x: loading must find it under the other name, or normalisation would start over.
    checkpoint = Path(scenarios(writer)["dir"]) / "scratch" / "model_6.pt"
    code = (
        "import torch\n"
        "from training.backends import skrl as backend\n"
        "from training.envs import make_env\n"
        "handle = make_env('InvertedPendulum-v5', backend=backend, num_envs=4, seed=3, "
        "device='cpu')\n"
        f"ckpt = backend.inspect_checkpoint({str(checkpoint)!r})\n"
        "import tempfile, pathlib\n"
        "t = backend.build_training(handle, log_dir=pathlib.Path(tempfile.mkdtemp()), "
        "init=ckpt, mode='resume')\n"
        "saved = torch.load(ckpt.path, weights_only=False)\n"
        "name = [n for n in t.agent.checkpoint_modules if n.endswith('_preprocessor') "
        "and n != 'value_preprocessor'][0]\n"
        "file_key = 'state_preprocessor' if 'state_preprocessor' in saved "
        "else 'observation_preprocessor'\n"
        "loaded = t.agent.checkpoint_modules[name].state_dict()['running_mean']\n"
        "print(t.start, name, file_key, torch.equal(loaded, saved[file_key]['running_mean']))\n"
    )
    proc = run_python(reader, "-c", code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    start, name, file_key, equal = proc.stdout.split()
    expected_names = {"1.4.3": "state_preprocessor", "2.1.1": "observation_preprocessor"}
    assert (start, name, file_key, equal) == (
        "6", expected_names[reader], expected_names[writer], "True")


# --- the scenario, run in a subprocess: python test_skrl_backend.py OUT_DIR --------------------


def _scenario(out: Path) -> None:
    import contextlib
    import io

    import torch
    from support.state_dicts import deep_equal

    from training.backends import skrl as backend
    from training.backends.base import CheckpointError, TrainHooks
    from training.envs import make_env

    handle = make_env("InvertedPendulum-v5", backend=backend, num_envs=4, seed=3, device="cpu")
    agent_cfg = handle.agent_cfg
    handle.agent_cfg = dict(agent_cfg, agent=dict(agent_cfg["agent"], rollouts=8))

    def run(name: str, max_iterations: int, init=None, mode=None, stop_after=None) -> dict:
        seen: dict[str, Any] = {"iterations": [], "checkpoints": []}

        def on_checkpoint(it: int, path: Path) -> None:
            progress = torch.load(path, weights_only=False)[backend.PROGRESS_KEY]
            seen["checkpoints"].append([it, path.name, progress["iteration"],
                                        progress["timesteps"]])

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
        seen["files"] = sorted(p.name for p in log_dir.rglob("*")) if log_dir.exists() else []
        return seen

    report: dict[str, Any] = {
        "version": backend.SKRL_VERSION,
        "format": backend.checkpoint_format(),
        "reward_metric": backend.REWARD_METRIC,
    }
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        report["scratch"] = run("scratch", 6)
    six = backend.inspect_checkpoint(out / "scratch" / "model_6.pt")
    report["inspected"] = {"iteration": six.iteration, "format": six.format}
    saved = torch.load(six.path, weights_only=False)

    def build(mode: str | None, init=six):
        return backend.build_training(handle, log_dir=out / "probe", init=init, mode=mode)

    def weights_equal(training) -> bool:
        names = [n for n in training.agent.checkpoint_modules if n != "optimizer"]
        return all(deep_equal(training.agent.checkpoint_modules[n].state_dict(), saved[n])
                   for n in names)

    def learning_rate(training) -> float:
        return training.agent.optimizer.param_groups[0]["lr"]

    resumed = build("resume")
    optimizer = resumed.agent.optimizer.state_dict()
    report["resume"] = {
        "loaded_iteration": resumed.start,
        "optimizer_equal_to_file": deep_equal(optimizer, saved["optimizer"]),
        "optimizer_steps": int(next(iter(optimizer["state"].values()))["step"]),
        "learning_rate": learning_rate(resumed),
        "file_learning_rate": saved["optimizer"]["param_groups"][0]["lr"],
    }
    with contextlib.redirect_stdout(stdout):
        report["resume"].update(run("resume", 10, init=six, mode="resume"))

    warm = build("warm-start")
    report["warm"] = {
        "loaded_iteration": warm.start,
        "weights_equal_to_file": weights_equal(warm),
        "optimizer_state_empty": warm.agent.optimizer.state_dict()["state"] == {},
        "learning_rate": learning_rate(warm),
    }
    report["scratch_weights_equal_to_file"] = weights_equal(build(None, init=None))
    with contextlib.redirect_stdout(stdout):
        report["warm"].update(run("warm", 2, init=six, mode="warm-start"))
        ten = backend.inspect_checkpoint(out / "resume" / "model_10.pt")
        report["already_done"] = run("already_done", 10, init=ten, mode="resume")
        report["stop"] = run("stop", 10, stop_after=3)

    # A file of skrl's own agent.save (what Isaac Lab's skrl train script writes as
    # checkpoints/agent_<timestep>.pt): accepted, iteration 0, every module loaded on resume.
    own = out / "agent_48.pt"
    resumed.agent.save(str(own))
    own_checkpoint = backend.inspect_checkpoint(own)
    from_own = build("resume", init=own_checkpoint)
    report["skrl_own_file"] = {
        "inspected": [own_checkpoint.iteration, own_checkpoint.format],
        "start": from_own.start,
        "optimizer_equal_to_file": deep_equal(from_own.agent.optimizer.state_dict(),
                                              saved["optimizer"]),
    }

    truncated = out / "truncated.pt"
    data = six.path.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    report["truncated_error"] = _error_of(CheckpointError, backend.inspect_checkpoint, truncated)

    # An rsl-rl checkpoint (one iteration of the rsl_rl backend) and the reverse.
    from training.backends import rsl_rl

    rsl_handle = make_env("InvertedPendulum-v5", backend=rsl_rl, num_envs=4, seed=3,
                          device="cpu")
    rsl_handle.agent_cfg = dict(rsl_handle.agent_cfg, num_steps_per_env=8)
    with contextlib.redirect_stdout(stdout):
        rsl_rl.train(rsl_handle, log_dir=out / "rsl_rl", device="cpu", max_iterations=1,
                     save_interval=1, init=None, mode=None, hooks=TrainHooks())
    report["rsl_rl_to_skrl_error"] = _error_of(
        CheckpointError, backend.inspect_checkpoint, out / "rsl_rl" / "model_1.pt")
    report["skrl_to_rsl_rl_error"] = _error_of(CheckpointError, rsl_rl.inspect_checkpoint,
                                               six.path)

    cheetah = make_env("HalfCheetah-v5", backend=backend, num_envs=2, seed=0, device="cpu")
    report["mismatch_error"] = _error_of(
        CheckpointError,
        lambda: backend.build_training(cheetah, log_dir=out / "probe", init=six, mode="resume"),
    )
    report["stdout"] = stdout.getvalue()
    (out / "scenario.json").write_text(json.dumps(report))


def _error_of(kind: type[Exception], call, *args) -> str | None:
    """The message of the ``kind`` error ``call(*args)`` raises, or None when it raises none."""
    try:
        call(*args)
    except kind as error:
        return str(error)
    return None


if __name__ == "__main__":
    _scenario(Path(sys.argv[1]))
