"""Compiled templates are cached per user: a cached template renders exactly as a fresh one,
an edited template is never served stale, and a broken cache only costs speed."""

from __future__ import annotations

from pathlib import Path

from osmo_inline.render import template_cache_dir


def entries() -> list[Path]:
    return sorted(template_cache_dir().glob("*")) if template_cache_dir().is_dir() else []


def dry_run(submit) -> str:
    result = submit("--quiet", "--dry-run", "--", "azure_client_id=cid")
    assert result.code == 0, result.stderr
    return result.stdout


def test_second_run_renders_the_same_spec_without_compiling_again(project, submit, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first = dry_run(submit)
    [entry] = entries()
    assert entry.is_relative_to(tmp_path / "cache" / "osmo-inline")
    written = entry.stat().st_mtime_ns
    assert dry_run(submit) == first
    assert entries() == [entry] and entry.stat().st_mtime_ns == written  # read, not rewritten


def test_an_edited_template_is_compiled_again(project, submit, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert "ONE_MORE" not in dry_run(submit)
    template = project / "templates" / "isaaclab-inline.yaml"
    template.write_text(template.read_text().replace(
        "      TASK: ", '      ONE_MORE: "{{ task }}"\n      TASK: ', 1))
    assert 'ONE_MORE: "Isaac-Velocity-Rough-Anymal-C-v0"' in dry_run(submit)
    assert len(entries()) == 2


def test_a_damaged_entry_is_replaced(project, submit, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first = dry_run(submit)
    [entry] = entries()
    for damage in (entry.read_bytes()[:40], b"not marshal data", b""):
        entry.write_bytes(damage)
        assert dry_run(submit) == first
        assert len(entry.read_bytes()) > 100  # compiled again and stored again


def test_an_unusable_cache_location_only_costs_speed(project, submit, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    unusable = dry_run(submit)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert unusable == dry_run(submit)
