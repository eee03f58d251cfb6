"""Flags, environment overrides and `--` handling, as seen in the spec that reaches osmo."""

from __future__ import annotations

import base64
import io
import json
import re
import zipfile

import pytest
import yaml


def task_of(spec_text: str) -> dict:
    return yaml.safe_load(spec_text)["workflow"]["tasks"][0]


def env_of(spec_text: str) -> dict:
    return task_of(spec_text)["environment"]


# (flags, environment variable of the task, expected value)
FLAG_CASES = [
    (["-t", "Isaac-Cartpole-v0"], "TASK", "Isaac-Cartpole-v0"),
    (["--task", "CartPole-v1"], "TASK", "CartPole-v1"),
    (["-n", "64"], "NUM_ENVS", "64"),
    (["--num-envs", "8"], "NUM_ENVS", "8"),
    (["-m", "600"], "MAX_ITERATIONS", "600"),
    (["--max-iterations", "3"], "MAX_ITERATIONS", "3"),
    (["-i", "nvcr.io/nvidia/isaac-lab:2.3.0"], "IMAGE", "nvcr.io/nvidia/isaac-lab:2.3.0"),
    (["-c", "runs:/abc/checkpoints/final"], "CHECKPOINT_URI", "runs:/abc/checkpoints/final"),
    (["-c", "runs:/a/b", "-M", "resume"], "CHECKPOINT_MODE", "resume"),
    (["-c", "runs:/a/b", "--checkpoint-mode", "Warm-Start"], "CHECKPOINT_MODE", "warm-start"),
    (["-M", "fresh"], "CHECKPOINT_MODE", "from-scratch"),
    (["-r", "anymal-policy"], "REGISTER_CHECKPOINT", "anymal-policy"),
    (["-s"], "RUN_AZURE_SMOKE_TEST", "1"),
    (["--run-smoke-test"], "RUN_AZURE_SMOKE_TEST", "1"),
    (["-p", "/opt/payload"], "PAYLOAD_ROOT", "/opt/payload"),
    (["--sleep-after-unpack", "7200"], "SLEEP_AFTER_UNPACK", "7200"),
    (["-b", "skrl"], "TRAINING_BACKEND", "skrl"),
    (["--backend", "rsl_rl"], "TRAINING_BACKEND", "rsl_rl"),
    (["--no-auto-resume"], "AUTO_RESUME", "false"),
    (["--video"], "VIDEO", "1"),
    (["--video-length", "50"], "VIDEO_LENGTH", "50"),
    (["--video-interval", "25"], "VIDEO_INTERVAL", "25"),
]


@pytest.mark.parametrize(("flags", "variable", "expected"), FLAG_CASES)
def test_each_flag_reaches_the_task_environment(project, submit, flags, variable, expected):
    result = submit(*flags, "--dry-run")
    assert result.code == 0, result.stderr
    assert env_of(result.stdout)[variable] == expected


# (environment override, value, expected in the task variable of the same name)
ENV_CASES = [
    ("TASK", "Isaac-Ant-v0", "Isaac-Ant-v0"),
    ("NUM_ENVS", "16", "16"),
    ("MAX_ITERATIONS", "42", "42"),
    ("IMAGE", "my/image:1", "my/image:1"),
    ("PAYLOAD_ROOT", "/data/p", "/data/p"),
    ("RUN_AZURE_SMOKE_TEST", "1", "1"),
    ("RUN_AZURE_SMOKE_TEST", "true", "1"),
    ("CHECKPOINT_URI", "models:/anymal/3", "models:/anymal/3"),
    ("CHECKPOINT_MODE", "FRESH", "from-scratch"),
    ("REGISTER_CHECKPOINT", "my-model", "my-model"),
    ("SLEEP_AFTER_UNPACK", "30", "30"),
    ("TRAINING_BACKEND", "skrl", "skrl"),
    ("AUTO_RESUME", "0", "false"),
    ("AUTO_RESUME", "Yes", "true"),
    ("VIDEO", "true", "1"),
    ("VIDEO", "off", "0"),
    ("VIDEO_LENGTH", "120", "120"),
    ("VIDEO_INTERVAL", "10", "10"),
]


@pytest.mark.parametrize(("name", "value", "expected"), ENV_CASES)
def test_each_environment_override_reaches_the_spec(project, submit, monkeypatch, name, value,
                                                     expected):
    monkeypatch.setenv(name, value)
    result = submit("--dry-run")
    assert result.code == 0, result.stderr
    assert env_of(result.stdout)[name] == expected


def test_a_flag_beats_its_environment_variable(project, submit, monkeypatch):
    monkeypatch.setenv("NUM_ENVS", "16")
    monkeypatch.setenv("TASK", "Isaac-FromEnv-v0")
    spec = submit("-n", "32", "--dry-run").stdout
    assert env_of(spec)["NUM_ENVS"] == "32"
    assert env_of(spec)["TASK"] == "Isaac-FromEnv-v0"


def test_defaults_match_the_seed(project, submit):
    spec_text = submit("--dry-run").stdout
    env = env_of(spec_text)
    assert env["TASK"] == "Isaac-Velocity-Rough-Anymal-C-v0"
    assert env["NUM_ENVS"] == "2048"
    assert env["MAX_ITERATIONS"] == ""
    assert env["IMAGE"] == "nvcr.io/nvidia/isaac-lab:2.2.0"
    assert env["PAYLOAD_ROOT"] == "/workspace/isaac_payload"
    assert env["CHECKPOINT_MODE"] == "from-scratch"
    assert env["TRAINING_BACKEND"] == "rsl_rl"
    assert env["AUTO_RESUME"] == "true"
    assert (env["VIDEO"], env["VIDEO_LENGTH"], env["VIDEO_INTERVAL"]) == ("0", "200", "100")
    assert env["NVIDIA_DRIVER_CAPABILITIES"] == "all"
    assert env["WORKFLOW_ID"] == "{{workflow_id}}"
    workflow = yaml.safe_load(spec_text)["workflow"]
    assert workflow["resources"]["default"] == {
        "cpu": 8, "gpu": 1, "memory": "48Gi", "storage": "80Gi"}
    assert workflow["timeout"]["exec_timeout"] == "23h"
    assert "default-values" not in yaml.safe_load(spec_text)


def test_resource_flags_reach_the_resources(project, submit):
    spec = submit("--gpu", "2", "--cpu", "16", "--memory", "64Gi", "--storage", "100Gi",
                  "--dry-run").stdout
    assert yaml.safe_load(spec)["workflow"]["resources"]["default"] == {
        "cpu": 16, "gpu": 2, "memory": "64Gi", "storage": "100Gi"}


def test_key_values_after_dashes_reach_the_spec_and_dry_run_may_stand_anywhere(project, submit):
    result = submit("--", "--dry-run", "azure_client_id=cid", "azure_tenant_id=tid",
                    "experiment_name=anymal", "seed=7", "workflow_name=my-run")
    assert result.code == 0, result.stderr
    env = env_of(result.stdout)
    assert (env["AZURE_CLIENT_ID"], env["AZURE_TENANT_ID"]) == ("cid", "tid")
    assert (env["EXPERIMENT_NAME"], env["SEED"]) == ("anymal", "7")
    assert yaml.safe_load(result.stdout)["workflow"]["name"] == "my-run"


def test_extraction_limits_reach_the_bootstrap_environment(project, submit):
    default = env_of(submit("-q", "--dry-run").stdout)
    assert (default["PAYLOAD_MAX_EXTRACTED_BYTES"], default["PAYLOAD_MAX_MEMBERS"]) == ("", "")
    spec = submit("-q", "--dry-run", "--", "payload_max_extracted_bytes=536870912",
                  "payload_max_members=20000").stdout
    env = env_of(spec)
    assert (env["PAYLOAD_MAX_EXTRACTED_BYTES"], env["PAYLOAD_MAX_MEMBERS"]) == (
        "536870912", "20000")


def test_value_may_contain_equals_signs(project, submit):
    uri = "http://mlflow:5000/?a=b"
    spec = submit("--", f"mlflow_tracking_uri={uri}", "--dry-run").stdout
    assert env_of(spec)["MLFLOW_TRACKING_URI"] == uri


def test_submission_reaches_osmo_as_a_file_with_forwarded_options(project, submit, fake_osmo):
    dry = submit("-t", "Isaac-Cartpole-v0", "--", "azure_client_id=cid", "--dry-run").stdout
    result = submit("-t", "Isaac-Cartpole-v0", "--", "azure_client_id=cid",
                    "--pool", "gpu-pool", "--priority", "LOW")
    assert result.code == 0, result.stderr
    [call] = fake_osmo.calls()
    assert call["argv"] == ["workflow", "submit", str(project / ".tmp" / "osmo-workflow.yaml"),
                            "--pool", "gpu-pool", "--priority", "LOW", "--format-type", "json"]
    assert call["spec"] == dry  # exactly what --dry-run showed
    assert "Workflow submitted: isaaclab-inline-training-7" in result.stdout
    assert "osmo workflow query isaaclab-inline-training-7" in result.stdout
    assert "osmo workflow logs isaaclab-inline-training-7" in result.stdout
    assert "https://osmo.example.com/workflows/isaaclab-inline-training-7" in result.stdout


def test_submission_is_recorded(project, submit, fake_osmo):
    assert submit("-n", "12", "--", "azure_client_id=cid").code == 0
    [record] = [json.loads(line)
                for line in (project / ".tmp" / "submissions.jsonl").read_text().splitlines()]
    zip_sha = env_of(fake_osmo.calls()[0]["spec"])["PAYLOAD_SHA256"]
    assert record["workflow_id"] == "isaaclab-inline-training-7"
    assert record["payload_sha256"] == zip_sha
    assert record["task"] == "Isaac-Velocity-Rough-Anymal-C-v0"
    assert record["parameters"]["num_envs"] == 12
    assert record["parameters"]["azure_client_id"] == "cid"
    assert record["time"]


SECRET_URI = "https://user:hunter2@127.0.0.1:5000/mlflow?sig=abc123&sv=2024"


def test_a_password_in_a_value_is_redacted_in_the_record_and_warned_about(
    project, submit, fake_osmo
):
    result = submit("--", f"mlflow_tracking_uri={SECRET_URI}", "--pool", "p")
    assert result.code == 0, result.stderr
    # The spec must carry the real value (the container needs it) ...
    assert env_of(fake_osmo.calls()[0]["spec"])["MLFLOW_TRACKING_URI"] == SECRET_URI
    # ... the record of it does not, and one line says how to pass a secret instead.
    log = (project / ".tmp" / "submissions.jsonl").read_text()
    assert "hunter2" not in log and "abc123" not in log
    [record] = [json.loads(line) for line in log.splitlines()]
    assert record["parameters"]["mlflow_tracking_uri"] == (
        "https://***@127.0.0.1:5000/mlflow?sig=***&sv=2024")
    [warning] = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warning.startswith("warning: mlflow_tracking_uri= looks like a credential (a URI "
                              "with a user[:password]@ part)")
    assert "OSMO credentials" in warning
    assert "hunter2" not in result.stderr


@pytest.mark.parametrize(("value", "warned"), [
    ("mlflow_tracking_uri=https://127.0.0.1:5000", False),
    ("mlflow_tracking_uri=https://tok@127.0.0.1:5000", True),
    ("mlflow_tracking_uri=https://127.0.0.1/?token=abc", True),
    ("experiment_name=token-study", False),
])
def test_the_warning_is_for_values_that_look_like_credentials(project, submit, value, warned):
    result = submit("-q", "--dry-run", "--", value)
    assert result.code == 0, result.stderr
    assert ("warning:" in result.stderr) == warned  # even with --quiet


def test_json_output_and_text_output_of_osmo(project, submit, fake_osmo):
    result = submit("--output", "json", "--", "--format-type", "text")
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["workflow_id"] == "isaaclab-inline-training-7"
    assert fake_osmo.calls()[0]["argv"][-2:] == ["--format-type", "text"]  # not added twice


def test_dry_run_never_calls_osmo_and_writes_the_payload_files(project, submit, fake_osmo):
    result = submit("--dry-run")
    assert result.code == 0
    assert fake_osmo.calls() == []
    assert "payload sha256:" in result.stderr
    assert sorted(p.name for p in (project / ".tmp").iterdir()) == [
        "osmo-training.b64", "osmo-training.zip"]


def test_quiet_dry_run_prints_only_the_spec(project, submit):
    result = submit("-q", "--dry-run")
    assert result.code == 0
    assert result.stderr == ""
    assert yaml.safe_load(result.stdout)["version"] == 2


def test_help_lists_every_flag(project, submit, capsys):
    with pytest.raises(SystemExit) as exit_info:
        submit("--help")
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    # Whole names only: "--workflow" must not be satisfied by "--workflow-id".
    words = set(re.findall(r"(?<![\w-])(-{1,2}[A-Za-z][\w-]*|[A-Z][A-Z_]+)(?![\w-])", text))
    for flag in ("--task", "--num-envs", "--max-iterations", "--image", "--checkpoint-uri",
                 "--checkpoint-mode", "--register-checkpoint", "--run-smoke-test",
                 "--workflow", "--payload-root", "--sleep-after-unpack", "--backend", "--gpu",
                 "--cpu", "--memory", "--storage", "--source", "--payload-budget", "--local",
                 "--quiet", "--output", "--workflow-id", "--no-auto-resume", "--dry-run",
                 "--video", "--video-length", "--video-interval", "VIDEO", "VIDEO_LENGTH",
                 "VIDEO_INTERVAL",
                 "-t", "-n", "-m", "-i", "-c", "-M", "-r", "-s", "-w", "-p", "-b", "-q",
                 "TRAINING_BACKEND", "PAYLOAD_ROOT", "AUTO_RESUME"):
        assert flag in words, flag


def test_users_own_template_variables_are_discovered(project, submit):
    template = project / "templates" / "mine.yaml"
    template.write_text(
        'version: 2\nworkflow:\n  name: "{{ name }}"\n  tasks:\n  - name: t\n'
        '    image: "{{ image }}"\n    command: ["bash", "-c"]\n'
        '    args: ["echo {{ greeting }}"]\n    files:\n    - path: /w/p.zip\n'
        '      base64: true\n      contents: "{{ payload_b64 }}"\n'
        "default-values:\n  name: mine\n  greeting: hi\n")
    result = submit("-w", "templates/mine.yaml", "--", "greeting=hello", "--dry-run")
    assert result.code == 0, result.stderr
    assert task_of(result.stdout)["args"] == ["echo hello"]
    wrong = submit("-w", "templates/mine.yaml", "--", "greting=hello", "--dry-run")
    assert wrong.code == 2
    assert "did you mean greeting?" in wrong.stderr


def test_dry_run_json_output(project, submit):
    (project / "src" / "training" / ".env").write_text("X=1\n")
    result = submit("-q", "--dry-run", "--output", "json")
    answer = json.loads(result.stdout)
    assert env_of(answer["spec"])["PAYLOAD_SHA256"] == answer["payload_sha256"]
    assert answer["files"] == ["src/training/__init__.py", "src/training/launch.py"]
    assert answer["excluded"] == [{"path": ".env", "reason": "secret: environment file"}]


def test_osmo_special_tokens_are_allowed_in_values(project, submit):
    spec = submit("--", "experiment_name=anymal-{{workflow_id}}", "--dry-run").stdout
    assert env_of(spec)["EXPERIMENT_NAME"] == "anymal-{{workflow_id}}"


def test_an_empty_environment_variable_counts_as_unset(project, submit, monkeypatch):
    monkeypatch.setenv("NUM_ENVS", "")
    monkeypatch.setenv("CHECKPOINT_MODE", "")
    env = env_of(submit("--dry-run").stdout)
    assert (env["NUM_ENVS"], env["CHECKPOINT_MODE"]) == ("2048", "from-scratch")


def test_a_flag_the_template_ignores_earns_a_note(project, submit):
    template = project / "templates" / "isaaclab-inline.yaml"
    template.write_text(template.read_text().replace(
        '      TRAINING_BACKEND: "{{ backend }}"\n', ""))
    result = submit("-b", "skrl", "--dry-run")
    assert result.code == 0
    assert "note: -b/--backend has no effect: isaaclab-inline.yaml does not use {{ backend }}" \
        in result.stderr
    assert "TRAINING_BACKEND" not in result.stdout


def test_works_from_anywhere_inside_the_project(project, submit, monkeypatch):
    """As the seed's script found its files next to itself: defaults and `.tmp/` belong to the
    project, wherever in it the command runs."""
    inside = project / "src" / "training" / "envs"
    inside.mkdir()
    monkeypatch.chdir(inside)
    result = submit("--quiet", "--dry-run")
    assert result.code == 0, result.stderr
    assert (project / ".tmp" / "osmo-training.zip").is_file()
    assert not any(path.name == ".tmp" for path in (project / "src").rglob("*"))
    [payload] = [f for f in yaml.safe_load(result.stdout)["workflow"]["tasks"][0]["files"]
                 if f["path"].endswith("payload.zip")]
    assert payload["contents"] == (project / ".tmp" / "osmo-training.b64").read_text()


def test_paths_given_on_the_command_line_are_relative_to_where_it_runs(project, submit,
                                                                        monkeypatch):
    elsewhere = project / "experiments"
    (elsewhere / "code").mkdir(parents=True)
    (elsewhere / "code" / "train.py").write_text("print('mine')\n")
    (elsewhere / "mine.yaml").write_text(
        (project / "templates" / "isaaclab-inline.yaml").read_text().replace(
            "      TASK: ", '      MINE: "yes"\n      TASK: ', 1))
    monkeypatch.chdir(elsewhere)
    result = submit("--quiet", "--dry-run", "-w", "mine.yaml", "--source", "code")
    assert result.code == 0, result.stderr
    assert yaml.safe_load(result.stdout)["workflow"]["tasks"][0]["environment"]["MINE"] == "yes"
    assert (project / ".tmp" / "osmo-training.zip").is_file()  # still the project's .tmp/
    # What is packaged is the --source tree (experiments/code), not the project's src/training.
    [payload] = [f for f in task_of(result.stdout)["files"] if f["path"].endswith("payload.zip")]
    with zipfile.ZipFile(io.BytesIO(base64.b64decode(payload["contents"]))) as archive:
        assert archive.namelist() == ["src/training/train.py"]
        assert archive.read("src/training/train.py") == b"print('mine')\n"


def test_outside_any_project_the_error_says_what_to_do(tmp_path, submit, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = submit("--dry-run")
    assert result.code == 2
    assert "workflow template not found" in result.stderr
    assert not (tmp_path / ".tmp").exists()


@pytest.mark.parametrize(("argv", "environ", "backend"), [
    (["--local"], {}, "skrl"),  # a local run of one process: the faster learner on a CPU
    ([], {}, "rsl_rl"),  # a cluster submission: Isaac Lab's most widely registered cfgs
    (["--local", "-b", "rsl_rl"], {}, "rsl_rl"),  # a flag always wins
    (["--local"], {"TRAINING_BACKEND": "rsl_rl"}, "rsl_rl"),  # and so does the variable
    (["--local", "--gpu", "2"], {}, "rsl_rl"),  # several ranks: skrl's need CUDA GPUs
    (["--local", "--evaluate", "-c", "runs:/abc/checkpoints/final"], {}, "rsl_rl"),
])
def test_the_local_default_backend_is_skrl_for_one_process(project, argv, environ, backend):
    from osmo_inline.cli import parse_config

    config = parse_config(["-t", "HalfCheetah-v5", *argv], environ, project)
    assert config.backend == backend
