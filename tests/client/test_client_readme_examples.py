"""The README's `submit-training` examples of its Overrides and Sweeps sections pass
`--dry-run`: a change of defaults (skrl became the `--local` default) must not leave an
example that exits 2 when a user pastes it."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SECTIONS = ("### Overrides", "## Sweeps")


def _section_commands(readme: str, heading: str) -> list[list[str]]:
    """The `submit-training` commands of the ```bash blocks under `heading`, up to the next
    heading (lines starting with # inside a code block are comments, not headings)."""
    commands, in_section, in_code, code_lang, pending = [], False, False, "", ""
    for line in readme.splitlines():
        if line.startswith("```"):
            in_code, code_lang = not in_code, line[3:].strip()
            continue
        if not in_code and line.startswith("#"):
            in_section = line.strip() == heading
            continue
        if not (in_section and in_code and code_lang == "bash"):
            continue
        pending += line.rstrip("\\").strip() + " "
        if line.endswith("\\"):
            continue
        words = shlex.split(pending, comments=True)
        pending = ""
        if words and words[0].endswith("submit-training"):
            commands.append(words[1:])
    return commands


EXAMPLES = [(heading, argv) for heading in SECTIONS
            for argv in _section_commands((REPO / "README.md").read_text(), heading)]


def test_both_sections_have_examples():
    assert {heading for heading, _ in EXAMPLES} == set(SECTIONS)


@pytest.mark.parametrize(("heading", "argv"), EXAMPLES,
                         ids=[f"{h.strip('# ')}-{i}" for i, (h, _) in enumerate(EXAMPLES)])
def test_a_readme_example_passes_dry_run(project, submit, heading, argv):
    shutil.copytree(REPO / "src" / "training" / "agents", project / "src/training/agents")
    result = submit("--dry-run", "-q", *argv)
    assert result.code == 0, f"{heading}: {shlex.join(argv)}: {result.stderr}"
    assert "workflow:" in result.stdout  # the rendered spec
