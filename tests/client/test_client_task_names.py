"""Task names across Isaac Lab images (Isaac Lab 3.0 renamed its tasks without aliases) and
--enable-cameras, as seen in the spec `--dry-run` prints and in what submit refuses."""

from __future__ import annotations

import json

import pytest
import yaml

from osmo_inline.task_names import TABLE, release_of_image

IMAGE_3 = "nvcr.io/nvidia/isaac-lab:3.0.0"
IMAGE_2 = "nvcr.io/nvidia/isaac-lab:2.2.0"


def env_of(spec_text: str) -> dict:
    return yaml.safe_load(spec_text)["workflow"]["tasks"][0]["environment"]


def test_a_2x_name_on_a_3x_image_is_refused_with_its_3_0_name(project, submit):
    result = submit("-i", IMAGE_3, "-t", "Isaac-Velocity-Rough-Anymal-C-v0", "--dry-run")
    assert result.code == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "is called IsaacContrib-Velocity-Rough-AnymalC on " + IMAGE_3 in lines[0]
    assert "use -t IsaacContrib-Velocity-Rough-AnymalC" in lines[0]


def test_submit_refuses_it_before_calling_osmo(project, submit, fake_osmo):
    result = submit("-i", IMAGE_3, "-t", "Isaac-Cartpole-v0")
    assert result.code == 2 and "use -t Isaac-Cartpole" in result.stderr
    assert fake_osmo.calls() == []


def test_a_3_0_name_on_a_2x_image_is_refused_with_its_2x_name(project, submit):
    result = submit("-t", "IsaacContrib-Velocity-Rough-AnymalC", "--dry-run")  # default image
    assert result.code == 2
    assert "on " + IMAGE_2 + " the task is called Isaac-Velocity-Rough-Anymal-C-v0" \
        in result.stderr


@pytest.mark.parametrize(("image", "task"), [
    (IMAGE_2, "Isaac-Velocity-Rough-Anymal-C-v0"),
    ("nvcr.io/nvidia/isaac-lab:2.3.2", "Isaac-Velocity-Rough-Anymal-C-v0"),
    (IMAGE_3, "IsaacContrib-Velocity-Rough-AnymalC"),
    ("nvcr.io/nvidia/isaac-lab:3.1.0", "IsaacContrib-Velocity-Rough-AnymalC"),
    ("my.registry/custom-isaac:1.0", "Isaac-Velocity-Rough-Anymal-C-v0"),
])
def test_the_default_task_follows_the_image(project, submit, image, task):
    result = submit("-i", image, "--dry-run")
    assert result.code == 0, result.stderr
    assert env_of(result.stdout)["TASK"] == task


@pytest.mark.parametrize(("image", "task"), [
    (IMAGE_3, "HalfCheetah-v5"),  # gymnasium ids: the container decides
    (IMAGE_2, "InvertedPendulum-v5"),
    (IMAGE_3, "Isaac-No-Such-Task-v0"),  # unknown to the table: listed closest in the pod
    (IMAGE_3, "Isaac-Cartpole"),
    ("my/image:1", "IsaacContrib-Velocity-Rough-AnymalC"),  # not an isaac-lab image
])
def test_other_names_pass_unchanged(project, submit, image, task):
    result = submit("-i", image, "-t", task, "--dry-run")
    assert result.code == 0, result.stderr
    assert env_of(result.stdout)["TASK"] == task


def test_the_table_comes_from_the_releases_registries():
    table = json.loads(TABLE.read_text())
    assert set(table["releases"]) == {"2.2", "2.3", "3.0"}
    assert "Isaac-Velocity-Rough-Anymal-C-v0" in table["releases"]["2.2"]
    assert "IsaacContrib-Velocity-Rough-AnymalC" in table["releases"]["3.0"]
    assert "Isaac-Velocity-Rough-Anymal-C-v0" not in table["releases"]["3.0"]
    assert release_of_image("nvcr.io/nvidia/isaac-lab:2.3.0") == "2.3"
    assert release_of_image("ubuntu:22.04") is None


@pytest.mark.parametrize(("flags", "environ", "expected"), [
    ((), {}, "0"), (("--enable-cameras",), {}, "1"), ((), {"ENABLE_CAMERAS": "true"}, "1"),
])
def test_enable_cameras_reaches_the_task(project, submit, monkeypatch, flags, environ,
                                         expected):
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    result = submit(*flags, "--dry-run")
    assert result.code == 0, result.stderr
    assert env_of(result.stdout)["ENABLE_CAMERAS"] == expected


def test_a_bad_enable_cameras_value_is_one_line(project, submit, monkeypatch):
    monkeypatch.setenv("ENABLE_CAMERAS", "maybe")
    result = submit("--dry-run")
    assert result.code == 2 and "ENABLE_CAMERAS (environment) must be 1 or 0" in result.stderr
