"""RUN_MODE / EVAL_EPISODES / VIDEO as the launcher reads them (stdlib config only)."""

from __future__ import annotations

import pytest

from training.config import ConfigError, parse_config


def test_evaluate_takes_its_episodes_and_needs_no_task():
    config = parse_config([], {"RUN_MODE": "Evaluate", "EVAL_EPISODES": "4",
                               "CHECKPOINT_URI": "runs:/abc/checkpoints/final"})
    assert (config.run_mode, config.eval_episodes, config.task) == ("evaluate", 4, "")
    assert config.video is False


def test_flags_beat_the_variables():
    config = parse_config(["--mode", "export", "--episodes", "2", "--video", "--checkpoint-uri",
                           "models:/p/1"], {"RUN_MODE": "evaluate", "VIDEO": "0"})
    assert (config.run_mode, config.eval_episodes, config.video) == ("export", 2, True)


def test_training_is_the_default_and_still_needs_a_task():
    assert parse_config(["--task", "Hopper-v5"], {}).run_mode == "train"
    with pytest.raises(ConfigError, match="no task given"):
        parse_config([], {})


@pytest.mark.parametrize(("environ", "phrase"), [
    ({"RUN_MODE": "evaluate"}, "evaluate needs a checkpoint"),
    ({"RUN_MODE": "play", "TASK": "Hopper-v5"}, "unknown run mode 'play'"),
    ({"RUN_MODE": "evaluate", "CHECKPOINT_URI": "x", "EVAL_EPISODES": "0"},
     "episodes must be at least 1"),
    ({"TASK": "Hopper-v5", "VIDEO": "maybe"}, "VIDEO must be true or false"),
])
def test_bad_values_are_config_errors(environ, phrase):
    with pytest.raises(ConfigError, match=phrase):
        parse_config([], environ)
