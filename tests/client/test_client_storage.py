"""Storage delivery: a payload over the budget goes to object storage as <sha256>.zip, is
uploaded once (the fake osmo keeps a directory as its bucket), and the spec names it as the
task's url input; the real bootstrap finds and verifies it in the task's input directory."""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import pytest
import yaml
from test_client_bootstrap import run_bootstrap, source_tree

from osmo_inline.payload import build_payload
from osmo_inline.validate import validate_spec

URL = "s3://team-bucket/isaac"
BUDGET = ["--payload-budget", "4096"]  # the test source below is ~200 KiB of base64


@pytest.fixture
def big_source(project: Path) -> Path:
    # incompressible bytes, as robot meshes are: far over the 4 KiB budget
    (project / "src" / "training" / "meshes.bin").write_bytes(os.urandom(150_000))
    return project


def verbs(fake_osmo) -> list[str]:
    return [" ".join(call["argv"][:2]) for call in fake_osmo.calls()]


def task_of(spec_text: str) -> dict:
    return yaml.safe_load(spec_text)["workflow"]["tasks"][0]


def test_an_over_budget_payload_is_uploaded_once_and_named_as_the_tasks_input(
    big_source, submit, fake_osmo
):
    result = submit(*BUDGET, "--storage-url", URL + "/", "--", "--pool", "p")
    assert result.code == 0, result.stderr
    zip_bytes = (big_source / ".tmp" / "osmo-training.zip").read_bytes()
    sha256 = hashlib.sha256(zip_bytes).hexdigest()
    object_url = f"{URL}/osmo-inline/{sha256}.zip"
    assert "delivery: storage (" in result.stderr and object_url in result.stderr
    assert verbs(fake_osmo) == ["data list", "data upload", "workflow submit"]
    list_call, upload_call, submit_call = fake_osmo.calls()
    assert "--no-pager" in list_call["argv"]
    assert fake_osmo.object(object_url).read_bytes() == zip_bytes  # stored under its hash

    spec = submit_call["spec"]
    assert validate_spec(spec) == []
    task = task_of(spec)
    assert task["inputs"] == [{"url": object_url}]
    assert [f["path"] for f in task["files"]] == ["/workspace/osmo_inline/bootstrap.py"]
    assert task["environment"]["PAYLOAD_ARCHIVE"] == "{{input:0}}"
    assert task["environment"]["PAYLOAD_SHA256"] == sha256
    assert len(spec) < 64 * 1024  # the spec stays small: only the bootstrap is inline
    [record] = [json.loads(line) for line in
                (big_source / ".tmp" / "submissions.jsonl").read_text().splitlines()]
    assert (record["delivery"], record["payload_url"]) == ("storage", object_url)

    again = submit(*BUDGET, "--storage-url", URL, "--", "--pool", "p")
    assert again.code == 0, again.stderr
    assert verbs(fake_osmo)[3:] == ["data list", "workflow submit"]  # nothing uploaded
    assert "already stored: nothing uploaded" in again.stderr
    assert fake_osmo.calls()[-1]["spec"] == spec


def test_changed_code_is_a_new_object(big_source, submit, fake_osmo):
    assert submit(*BUDGET, "--storage-url", URL).code == 0
    (big_source / "src" / "training" / "launch.py").write_text("print('changed')\n")
    assert submit(*BUDGET, "--storage-url", URL).code == 0
    assert verbs(fake_osmo).count("data upload") == 2
    stored = sorted(p.name for p in fake_osmo.object(URL + "/osmo-inline").iterdir())
    assert len(stored) == 2 and all(name.endswith(".zip") for name in stored)


def test_under_the_budget_auto_stays_inline_and_storage_can_be_forced(
    project, submit, fake_osmo
):
    inline = submit("--storage-url", URL, "--dry-run")
    assert inline.code == 0, inline.stderr
    assert "delivery: inline" in inline.stderr
    assert "inputs" not in task_of(inline.stdout)
    assert fake_osmo.calls() == []  # an inline dry run still calls nothing

    forced = submit("--delivery", "storage", "--storage-url", URL)
    assert forced.code == 0, forced.stderr
    assert "delivery: storage (--delivery storage)" in forced.stderr
    assert verbs(fake_osmo) == ["data list", "data upload", "workflow submit"]
    assert "url" in task_of(fake_osmo.calls()[-1]["spec"])["inputs"][0]


def test_the_url_comes_from_the_environment_or_a_key_value(big_source, submit, fake_osmo,
                                                           monkeypatch):
    monkeypatch.setenv("OSMO_INLINE_STORAGE_URL", "gs://from-env")
    from_env = submit(*BUDGET, "--dry-run", "-q", "--output", "json")
    assert json.loads(from_env.stdout)["payload_url"].startswith("gs://from-env/osmo-inline/")
    # the command line beats the environment
    from_key = submit(*BUDGET, "--dry-run", "-q", "--output", "json", "--",
                      "storage_url=azure://account/container")
    assert json.loads(from_key.stdout)["payload_url"].startswith(
        "azure://account/container/osmo-inline/")
    twice = submit(*BUDGET, "--storage-url", URL, "--dry-run", "--", "storage_url=gs://other")
    assert twice.code == 2 and "give it once" in twice.stderr


def test_over_budget_without_a_storage_url_says_what_to_pass(big_source, submit, fake_osmo):
    result = submit(*BUDGET)
    assert result.code == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("submit-training: error: payload too large")
    assert "pass --storage-url s3://BUCKET/PREFIX" in line
    assert "OSMO_INLINE_STORAGE_URL" in line
    assert fake_osmo.calls() == [] and not (big_source / ".tmp").exists()


@pytest.mark.parametrize(("argv", "message"), [
    (["--delivery", "storage"], "--delivery storage needs a storage URL: pass --storage-url"),
    (["--storage-url", "http://example.com/x"], "unsupported storage scheme http://"),
    (["--storage-url", "s3://"], "names no bucket"),
    (["--storage-url", "s3:bucket"], "is not a storage URL"),
    (["--delivery", "inline", *BUDGET, "--storage-url", URL], "or use --delivery storage"),
    ([*BUDGET, "--storage-url", "local-store"], "only --local can read"),
    (["--local", *BUDGET, "--storage-url", URL], "a --local run reads the payload object"),
])
def test_storage_settings_that_cannot_work_are_refused_at_once(
    big_source, submit, fake_osmo, argv, message
):
    result = submit(*argv)
    assert result.code == 2
    [line] = result.stderr.strip().splitlines()
    assert message in line
    assert fake_osmo.calls() == [] and not (big_source / ".tmp").exists()
    assert not (big_source / "local-store").exists()


@pytest.mark.parametrize(("osmo_code", "code", "meaning"), [
    (10, 7, "could not reach its service"),
    (75, 8, "rate limited"),
    (2, 6, "check your data credentials"),
])
def test_a_failed_upload_submits_nothing(big_source, submit, fake_osmo, monkeypatch,
                                         osmo_code, code, meaning):
    monkeypatch.setenv("FAKE_OSMO_FAIL_ON", "data upload")
    monkeypatch.setenv("FAKE_OSMO_EXIT", str(osmo_code))
    monkeypatch.setenv("FAKE_OSMO_MESSAGE", "bucket said no")
    result = submit(*BUDGET, "--storage-url", URL)
    assert result.code == code
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("submit-training: error: uploading the payload: ")
    assert meaning in last and "bucket said no" in last
    assert verbs(fake_osmo) == ["data list", "data upload"]
    assert not fake_osmo.object(URL).exists()
    assert not (big_source / ".tmp" / "osmo-workflow.yaml").exists()
    assert not (big_source / ".tmp" / "submissions.jsonl").exists()


def test_a_failed_listing_submits_nothing(big_source, submit, fake_osmo, monkeypatch):
    monkeypatch.setenv("FAKE_OSMO_EXIT", "2")
    result = submit(*BUDGET, "--storage-url", URL)
    assert result.code == 6
    assert "listing: osmo usage or login error" in result.stderr
    assert verbs(fake_osmo) == ["data list"]


def test_dry_run_says_the_delivery_the_object_and_whether_it_would_upload(
    big_source, submit, fake_osmo, monkeypatch
):
    before = submit(*BUDGET, "--storage-url", URL, "--dry-run")
    assert before.code == 0, before.stderr
    sha256 = task_of(before.stdout)["environment"]["PAYLOAD_SHA256"]
    object_url = f"{URL}/osmo-inline/{sha256}.zip"
    assert "delivery: storage (" in before.stderr
    assert f"storage: {object_url} is not stored yet: submitting would upload it" \
        in before.stderr
    assert verbs(fake_osmo) == ["data list"]  # looked, uploaded nothing
    assert not fake_osmo.object(object_url).exists()

    assert submit(*BUDGET, "--storage-url", URL).code == 0
    after = submit(*BUDGET, "--storage-url", URL, "--dry-run", "--output", "json")
    answer = json.loads(after.stdout)
    assert (answer["delivery"], answer["payload_url"]) == ("storage", object_url)
    assert "already stored: submitting uploads nothing" in answer["storage"]

    monkeypatch.setenv("FAKE_OSMO_EXIT", "2")  # not logged in
    monkeypatch.setenv("FAKE_OSMO_MESSAGE", "please log in")
    no_login = submit(*BUDGET, "--storage-url", URL, "--dry-run")
    assert no_login.code == 0
    assert "could not check" in no_login.stderr and "please log in" in no_login.stderr
    assert task_of(no_login.stdout)["inputs"] == [{"url": object_url}]

    monkeypatch.setenv("PATH", "/nonexistent")
    no_osmo = submit(*BUDGET, "--storage-url", URL, "--dry-run")
    assert no_osmo.code == 0
    assert "could not check whether" in no_osmo.stderr and "osmo not on PATH" in no_osmo.stderr
    assert task_of(no_osmo.stdout)["inputs"] == [{"url": object_url}]


def test_a_template_without_payload_url_cannot_deliver_through_storage(big_source, submit):
    (big_source / "templates" / "mine.yaml").write_text(
        'version: 2\nworkflow:\n  name: mine\n  tasks:\n  - name: t\n    image: i\n'
        '    command: ["true"]\n    files:\n    - path: /w/p.zip\n      base64: true\n'
        '      contents: "{{ payload_b64 }}"\n')
    result = submit("-w", "templates/mine.yaml", *BUDGET, "--storage-url", URL, "--dry-run")
    assert result.code == 2
    assert "never uses {{ payload_url }}" in result.stderr


# The bootstrap's side: PAYLOAD_ARCHIVE is the task's input directory.

def stored_object(input_dir: Path, tmp_path: Path, nested: str = "") -> tuple[Path, str]:
    data = build_payload(source_tree(tmp_path / "training")).zip_bytes
    sha256 = hashlib.sha256(data).hexdigest()
    path = input_dir / nested / f"{sha256}.zip"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path, sha256


@pytest.mark.parametrize("nested", ["", "osmo-inline", "isaac/osmo-inline"])
def test_the_bootstrap_finds_the_object_in_the_input_directory(tmp_path, nested):
    input_dir = tmp_path / "input" / "0"
    _, sha256 = stored_object(input_dir, tmp_path, nested)
    (input_dir / "other.zip").write_bytes(b"not ours")
    root = tmp_path / "payload-root"
    result = run_bootstrap(input_dir, root, sha256=sha256, SLEEP_AFTER_UNPACK="0")
    assert result.returncode == 0, result.stderr
    assert "payload sha256 ok" in result.stdout
    assert (root / "src" / "training" / "launch.py").is_file()


def test_the_bootstrap_refuses_a_tampered_or_missing_object(tmp_path):
    input_dir = tmp_path / "input" / "0"
    path, sha256 = stored_object(input_dir, tmp_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    tampered = run_bootstrap(input_dir, tmp_path / "root", sha256=sha256)
    assert tampered.returncode == 8
    assert "sha256 mismatch" in tampered.stderr
    assert not (tmp_path / "root").exists()
    assert zipfile.is_zipfile(path)  # still a zip: only the hash tells it apart

    missing = run_bootstrap(input_dir, tmp_path / "root", sha256="0" * 64)
    assert missing.returncode == 8
    assert f"{'0' * 64}.zip not found in {input_dir}" in missing.stderr


def test_help_names_the_delivery_flags_and_the_variable(project, submit, capsys):
    with pytest.raises(SystemExit) as exit_info:
        submit("--help")
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for word in ("--delivery {auto,inline,storage}", "--storage-url URL",
                 "OSMO_INLINE_STORAGE_URL", "storage_url="):
        assert word in text, word
