"""RunConfig from flags and the task environment (no subprocess: a pure function)."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.config import ConfigError, parse_config

TEMPLATE_EMPTIES = {  # what the workflow template passes when the user set nothing
    "TASK": "Ant-v5", "NUM_ENVS": "", "MAX_ITERATIONS": "", "TRAINING_BACKEND": "",
    "CHECKPOINT_URI": "", "CHECKPOINT_MODE": "", "REGISTER_CHECKPOINT": "",
    "RUN_AZURE_SMOKE_TEST": "0", "SEED": "", "EXPERIMENT_NAME": "", "WORKFLOW_ID": "wf-1",
    "TRAINING_OUTPUT_DIR": "", "MLFLOW_TRACKING_URI": "", "AZURE_SUBSCRIPTION_ID": "",
    "AZURE_RESOURCE_GROUP": "", "AZUREML_WORKSPACE_NAME": "",
}


def test_empty_environment_values_mean_unset() -> None:
    config = parse_config([], TEMPLATE_EMPTIES)
    assert config.task == "Ant-v5"
    assert config.max_iterations is None and config.seed is None
    assert config.backend == "rsl_rl" and config.checkpoint_mode == "from-scratch"
    assert config.register_checkpoint is None and config.run_smoke_test is False
    assert config.experiment_name == "isaaclab-Ant-v5"
    assert config.mlflow_tracking_uri is None and config.azure_workspace is None
    assert config.output_dir == Path("training_output")
    assert config.workflow_id == "wf-1"


def test_flags_beat_environment_and_empty_flags_fall_back() -> None:
    env = TEMPLATE_EMPTIES | {"NUM_ENVS": "64", "MAX_ITERATIONS": "100", "SEED": "3"}
    config = parse_config(["--num_envs", "8", "--max_iterations", "", "--seed", "7",
                           "--experiment-name", "mine"], env)
    assert config.num_envs == 8  # flag wins
    assert config.max_iterations == 100  # empty flag: the environment's value
    assert config.seed == 7 and config.experiment_name == "mine"


def test_fresh_is_from_scratch_and_mode_is_case_insensitive() -> None:
    assert parse_config(["--checkpoint-mode", "FRESH"], TEMPLATE_EMPTIES).checkpoint_mode \
        == "from-scratch"
    config = parse_config(["--checkpoint-mode", "Resume", "--checkpoint-uri", "runs:/x/y"],
                          TEMPLATE_EMPTIES)
    assert config.checkpoint_mode == "resume" and config.checkpoint_uri == "runs:/x/y"


def test_azure_workspace_needs_all_three_values() -> None:
    partial = TEMPLATE_EMPTIES | {"AZURE_SUBSCRIPTION_ID": "sub", "AZURE_RESOURCE_GROUP": "rg"}
    assert parse_config([], partial).azure_workspace is None
    full = partial | {"AZUREML_WORKSPACE_NAME": "ws"}
    assert parse_config([], full).azure_workspace == ("sub", "rg", "ws")


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        ([], {}, "no task given"),
        (["--checkpoint-mode", "warm-start"], {"TASK": "Ant-v5"}, "needs a checkpoint"),
        (["--checkpoint-mode", "resume"], TEMPLATE_EMPTIES, "needs a checkpoint"),
        (["--checkpoint-mode", "later"], TEMPLATE_EMPTIES, "unknown checkpoint mode 'later'"),
        (["--num_envs", "0"], TEMPLATE_EMPTIES, "num_envs must be at least 1"),
        (["--max_iterations", "ten"], TEMPLATE_EMPTIES, "max_iterations must be a whole number"),
        (["--backend", "sb3"], TEMPLATE_EMPTIES, "unknown backend 'sb3': expected one of "
                                                 "rsl_rl, skrl"),
        ([], TEMPLATE_EMPTIES | {"RUN_AZURE_SMOKE_TEST": "maybe"}, "must be 0 or 1"),
        ([], TEMPLATE_EMPTIES | {"VIDEO": "maybe"}, "VIDEO must be true or false"),
        (["--video-length", "0"], TEMPLATE_EMPTIES, "video_length must be at least 1"),
        (["--video-interval", "x"], TEMPLATE_EMPTIES, "video_interval must be a whole number"),
    ],
)
def test_bad_values_are_one_clear_message(argv: list[str], env: dict[str, str],
                                          message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(argv, env)


def test_rank_flags_beat_the_contract_variables() -> None:
    environ = {"NPROC_PER_NODE": "2", "NNODES": "2", "NODE_RANK": "1", "MASTER_ADDR": "lead",
               "MASTER_PORT": ""}
    config = parse_config(["--task", "X", "--nproc-per-node", "4"], environ)
    assert (config.nproc_per_node, config.nnodes, config.node_rank, config.master_addr,
            config.master_port, config.world_size) == (4, 2, 1, "lead", 29500, 8)
    single = parse_config(["--task", "X"], {"NPROC_PER_NODE": "", "NNODES": ""})
    assert (single.world_size, single.master_addr) == (1, "127.0.0.1")
def test_video_is_off_by_default_and_turns_the_cameras_on() -> None:
    from training.app import launcher_kwargs

    default = parse_config([], TEMPLATE_EMPTIES)
    assert not default.video and not default.enable_cameras
    assert (default.video_length, default.video_interval) == (200, 100)
    flags = parse_config(["--video", "--video-length", "50", "--video_interval", "10"],
                         TEMPLATE_EMPTIES)
    assert (flags.video, flags.video_length, flags.video_interval) == (True, 50, 10)
    # Isaac Lab's train scripts: "always enable cameras to record video"
    assert flags.enable_cameras and launcher_kwargs("2.2", flags)["enable_cameras"] is True
    template = parse_config([], TEMPLATE_EMPTIES | {"VIDEO": "1", "VIDEO_LENGTH": "",
                                                    "VIDEO_INTERVAL": "7"})
    assert (template.video, template.video_length, template.video_interval) == (True, 200, 7)
