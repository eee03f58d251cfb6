"""Bad input: one line on stderr, README's exit code, no osmo call, nothing in `.tmp/`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

BAD_INPUTS = [
    # (id, argv, environment, exit code, text the one-line message contains)
    ("num-envs-zero", ["-n", "0"], {}, 2, "--num-envs must be a positive integer"),
    ("num-envs-word", ["-n", "abc"], {}, 2, "--num-envs must be a positive integer"),
    ("num-envs-missing-value", ["-n"], {}, 2, "expected one argument"),
    ("max-iterations-zero", ["-m", "0"], {}, 2, "--max-iterations must be a positive"),
    ("max-iterations-float", ["-m", "1.5"], {}, 2, "--max-iterations must be a positive"),
    ("unknown-mode", ["-M", "sideways"], {}, 2, "unknown checkpoint mode 'sideways'"),
    ("resume-without-uri", ["-M", "resume"], {}, 2, "resume needs a checkpoint"),
    ("warm-start-without-uri", ["-M", "warm-start"], {}, 2, "warm-start needs a checkpoint"),
    ("sleep-negative", ["--sleep-after-unpack", "-1"], {}, 2, "non-negative number"),
    ("sleep-word", ["--sleep-after-unpack", "soon"], {}, 2, "non-negative number"),
    ("missing-template", ["-w", "nope.yaml"], {}, 2, "workflow template not found"),
    ("missing-source", ["--source", "nowhere"], {}, 2, "source directory not found"),
    ("unknown-option", ["--tpyo", "x"], {}, 2, "unrecognized arguments: --tpyo"),
    ("stray-positional", ["Isaac-Ant-v0"], {}, 2, "unrecognized arguments: Isaac-Ant-v0"),
    ("unknown-key", ["--", "azure_clientid=x"], {}, 2,
     "unknown template value 'azure_clientid': did you mean azure_client_id?"),
    ("client-filled-key", ["--", "payload_b64=AAAA"], {}, 2, "computed by the client"),
    ("flag-backed-key", ["--", "task=x"], {}, 2, "task is set by a flag"),
    ("set-forwarded", ["--", "--set", "a=1"], {}, 2, "--set is not needed"),
    ("unknown-backend", ["-b", "tensorflow"], {}, 2, "unknown backend 'tensorflow'"),
    ("gpu-float", ["--gpu", "1.5"], {}, 2, "--gpu must be a non-negative integer"),
    ("cpu-zero", ["--cpu", "0"], {}, 2, "--cpu must be a positive integer"),
    ("nodes-zero", ["--nodes", "0"], {}, 2, "--nodes must be a positive integer, not '0'"),
    ("nodes-word", ["--nodes", "abc"], {}, 2, "--nodes must be a positive integer, not 'abc'"),
    ("nodes-without-gpu", ["--gpu", "0", "--nodes", "2"], {}, 2,
     "--nodes 2 needs at least one GPU on each node"),
    ("evaluate-on-nodes", ["--evaluate", "-c", "runs:/abc/checkpoints/final", "--nodes", "2"],
     {}, 2, "--evaluate runs in one process on one node: drop --nodes"),
    ("nodes-over-the-limit", ["--nodes", "17"], {}, 2, "--nodes 17 is more than 16 tasks"),
    ("video-interval-zero", ["--video-interval", "0"], {}, 2,
     "--video-interval must be a positive integer"),
    ("video-length-env", [], {"VIDEO_LENGTH": "long"}, 2,
     "VIDEO_LENGTH (environment) must be a positive integer"),
    ("video-env-word", [], {"VIDEO": "maybe"}, 2, "VIDEO (environment) must be 1 or 0"),
    ("memory-word", ["--memory", "lots"], {}, 2, "--memory must be a quantity"),
    ("relative-payload-root", ["-p", "payload"], {}, 2, "must be an absolute path"),
    # issue 18: /workspace/x/.. is /workspace, which the bootstrap would have emptied
    ("dotdot-payload-root", ["-p", "/workspace/x/.."], {}, 2,
     "-p/--payload-root must not contain '..' components, not '/workspace/x/..'"),
    ("dotdot-payload-root-inside", ["-p", "/workspace/../etc/payload"], {}, 2,
     "must not contain '..' components"),
    ("env-dotdot-payload-root", [], {"PAYLOAD_ROOT": "/workspace/isaac/../.."}, 2,
     "PAYLOAD_ROOT (environment) must not contain '..' components"),
    # issue 14: a key=value whose key is empty or not a name was forwarded to osmo
    ("bad-extraction-limit", ["--", "payload_max_members=many"], {}, 2,
     "payload_max_members= must be a positive integer, not 'many'"),
    ("zero-extraction-limit", ["--", "payload_max_extracted_bytes=0"], {}, 2,
     "payload_max_extracted_bytes= must be a positive integer"),
    ("empty-key", ["--", "=value"], {}, 2,
     "bad template value '=value' after --: the key is empty"),
    ("digit-key", ["--", "1x=v"], {}, 2, "the key '1x' is not a name"),
    ("dash-key", ["--", "a-b=v"], {}, 2, "the key 'a-b' is not a name"),
    ("dot-key", ["--", "a.b=v"], {}, 2, "the key 'a.b' is not a name"),
    ("empty-key-among-osmo-options", ["--", "--pool", "p", "=v", "--priority", "LOW"], {}, 2,
     "the key is empty"),
    ("bad-key-hides-its-password", ["--", "my-uri=https://u:hunter2@127.0.0.1/"], {}, 2,
     "bad template value 'my-uri=https://***@127.0.0.1/'"),
    ("empty-task", ["-t", ""], {}, 2, "--task must be a non-empty word"),
    ("bad-output", ["--output", "yaml"], {}, 2, "invalid choice: 'yaml'"),
    ("workflow-id-without-local", ["--workflow-id", "w-1"], {}, 2, "only applies to --local"),
    ("quote-in-value", ["--", 'azure_client_id=a"b'], {}, 2, "double quote"),
    ("jinja-in-value", ["--", "experiment_name={{ x }}"], {}, 2, "Jinja syntax"),
    # a line break to YAML, not only \n
    ("line-separator-in-value", ["--", "experiment_name=a\u2028b"], {}, 2, "line break"),
    ("env-num-envs", [], {"NUM_ENVS": "many"}, 2, "NUM_ENVS (environment) must be a positive"),
    ("env-smoke", [], {"RUN_AZURE_SMOKE_TEST": "maybe"}, 2, "RUN_AZURE_SMOKE_TEST"),
    ("env-mode", [], {"CHECKPOINT_MODE": "later"}, 2, "unknown checkpoint mode 'later'"),
    ("env-auto-resume", [], {"AUTO_RESUME": "sometimes"}, 2,
     "AUTO_RESUME (environment) must be true or false"),
    ("budget", ["--payload-budget", "100"], {}, 2, "payload too large"),
    ("bad-workflow-name", ["--", "workflow_name=9lives"], {}, 3, "workflow.name: '9lives'"),
    ("mixed-timeout-units", ["--", "exec_timeout=10h5m"], {}, 3,
     "workflow.timeout.exec_timeout: '10h5m'"),
    ("osmo-missing", [], {"PATH": "/nonexistent"}, 4, "osmo CLI not found on PATH"),
]


@pytest.mark.parametrize(("argv", "environment", "code", "message"),
                         [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_is_one_line_and_touches_nothing(
    project, submit, fake_osmo, monkeypatch, argv, environment, code, message
):
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    result = submit(*argv)
    assert result.code == code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("submit-training: ")
    assert message in lines[0]
    assert "Traceback" not in result.stderr
    assert fake_osmo.calls() == []
    assert not (project / ".tmp").exists()


def test_budget_error_names_the_largest_files(project, submit):
    (project / "src" / "training" / "weights.bin").write_bytes(os.urandom(700_000))
    (project / "src" / "training" / "table.bin").write_bytes(os.urandom(200_000))
    result = submit("--dry-run")
    assert result.code == 2
    assert "payload too large" in result.stderr
    message = result.stderr.strip()
    assert message.index("src/training/weights.bin") < message.index("src/training/table.bin")
    assert not (project / ".tmp").exists()


def test_symlink_in_source_is_refused(project, submit, fake_osmo):
    (project / "src" / "training" / "data").symlink_to(Path("/etc"))
    result = submit()
    assert result.code == 2
    assert "symlink in the source tree" in result.stderr
    assert fake_osmo.calls() == [] and not (project / ".tmp").exists()


def test_broken_template_is_one_line(project, submit):
    (project / "templates" / "bad.yaml").write_text(
        "version: 2\nworkflow:\n  name: {{ name\n")
    result = submit("-w", "templates/bad.yaml", "--dry-run")
    assert result.code == 2
    assert "bad.yaml:3: template syntax error" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_spaced_special_token_is_refused(project, submit):
    template = project / "templates" / "isaaclab-inline.yaml"
    template.write_text(template.read_text().replace("{{output}}", "{{ output }}"))
    result = submit("--dry-run")
    assert result.code == 2
    assert "'output' is undefined" in result.stderr


def test_template_without_payload_is_refused(project, submit):
    (project / "templates" / "empty.yaml").write_text(
        "version: 2\nworkflow:\n  name: x\n  tasks:\n  - name: t\n    image: i\n"
        "    command: [true]\n")
    result = submit("-w", "templates/empty.yaml", "--dry-run")
    assert result.code == 2
    assert "never uses {{ payload_b64 }}" in result.stderr


# osmo's documented exit codes -> ours, with what the message tells the user to do
OSMO_FAILURES = [
    (1, 5, "osmo rejected the workflow"),
    (2, 6, "run `osmo login`"),
    (10, 7, "could not reach its service"),
    (75, 8, "rate limited"),
    (3, 9, "osmo failed with exit code 3"),
]


@pytest.mark.parametrize(("osmo_code", "code", "meaning"), OSMO_FAILURES)
def test_osmo_failures_are_mapped(project, submit, fake_osmo, monkeypatch,
                                  osmo_code, code, meaning):
    monkeypatch.setenv("FAKE_OSMO_EXIT", str(osmo_code))
    monkeypatch.setenv("FAKE_OSMO_MESSAGE", "pool gpu-pool does not exist")
    result = submit("--", "--pool", "gpu-pool")
    assert result.code == code
    [line] = result.stderr.strip().splitlines()[-1:]
    assert meaning in line and "pool gpu-pool does not exist" in line
    assert len(fake_osmo.calls()) == 1
    assert not (project / ".tmp" / "submissions.jsonl").exists()


def test_unwritable_tmp_is_one_line(project, submit):
    (project / ".tmp").write_text("a file where the directory should be")
    result = submit("--dry-run")
    assert result.code == 2
    [line] = result.stderr.strip().splitlines()[-1:]
    assert line.startswith("submit-training: error:") and ".tmp" in line
    assert "Traceback" not in result.stderr


def test_osmo_that_cannot_run_exits_4(project, submit, monkeypatch, tmp_path):
    (tmp_path / "bin2").mkdir()
    broken = tmp_path / "bin2" / "osmo"
    broken.write_text("#!/nonexistent/interpreter\n")
    broken.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin2'}{os.pathsep}{os.environ['PATH']}")
    result = submit()
    assert result.code == 4
    assert "cannot run" in result.stderr


def test_osmo_options_written_with_equals_are_still_forwarded(project, submit, fake_osmo):
    result = submit("--", "--pool=gpu-pool", "--priority=LOW", "seed=3")
    assert result.code == 0, result.stderr
    [call] = fake_osmo.calls()
    assert call["argv"][3:5] == ["--pool=gpu-pool", "--priority=LOW"]


def test_an_error_that_quotes_a_value_hides_its_password(project, submit, fake_osmo):
    result = submit("--", 'mlflow_tracking_uri=https://u:hunter2@127.0.0.1/"')
    assert result.code == 2
    assert "hunter2" not in result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("submit-training: error: value of mlflow_tracking_uri")
    assert "'https://***@127.0.0.1/\"'" in error
    assert fake_osmo.calls() == [] and not (project / ".tmp").exists()
