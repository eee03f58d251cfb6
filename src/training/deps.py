"""Dependencies first: find what is missing before anything heavy is imported.

Standard library only. Each requirement is checked with importlib.util.find_spec (nothing is
imported); only the missing requirements are pip-installed, under constraints that pin what
the image already ships so pip can neither upgrade nor replace it (the original reinstalled
everything at each start and broke Isaac Sim's numpy / rsl-rl). A line naming a package the
image ships (a user's ``torch==...`` in the payload's requirements.txt) is refused before
anything is installed: exit 2, like every other bad input of the payload.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from training.config import ConfigError

REQUIREMENTS_FILE = Path(__file__).with_name("requirements.txt")

# Shipped by the image, per backend: checked, never installed. (pip package, import name)
IMAGE_PACKAGES = {"rsl_rl": (("torch", "torch"), ("rsl-rl-lib", "rsl_rl")),
                  "skrl": (("torch", "torch"), ("skrl", "skrl"))}
# What an Isaac Lab image ships (PEP 503 names, and the isaaclab-* / isaacsim-* families): a
# requirements line naming one is refused, and those installed are pinned to their version
# while pip runs, so an install cannot move them. The client's copy of this rule is
# osmo_inline.requirements (the two never import each other; a test keeps them equal).
IMAGE_DISTRIBUTIONS = ("torch", "numpy", "rsl-rl-lib", "skrl", "isaaclab", "isaacsim")
IMAGE_FAMILIES = ("isaaclab-", "isaacsim-")
PROTECTED_DISTRIBUTIONS = IMAGE_DISTRIBUTIONS


class RefusedRequirement(ConfigError):
    """requirements.txt names a package the image ships (exit 2, before any install)."""


class MissingDependencyError(Exception):
    """Required packages are missing and were not installed (exit code 3)."""


@dataclass(frozen=True)
class Requirement:
    spec: str  # the pip requirement as written, e.g. "mlflow>=2.16"
    package: str  # "mlflow"
    module: str  # import name, e.g. "azure.identity"
    azure_only: bool
    video_only: bool = False  # "only: video": needed only with --video (training.video)


def read_requirements(path: Path = REQUIREMENTS_FILE) -> list[Requirement]:
    requirements = []
    for line in path.read_text().splitlines():
        spec, _, comment = line.partition("#")
        spec = spec.strip()
        if not spec:
            continue
        package = re.split(r"[\s<>=!~;\[]", spec, maxsplit=1)[0]
        module_match = re.search(r"import:\s*([\w.]+)", comment)
        requirements.append(
            Requirement(
                spec=spec,
                package=package,
                module=module_match.group(1) if module_match else package.replace("-", "_"),
                azure_only=bool(re.search(r"only:\s*azure", comment)),
                video_only=bool(re.search(r"only:\s*video", comment)),
            )
        )
    return requirements


def image_package(requirement: Requirement) -> str | None:
    """The image package a requirement names (normalised), or None."""
    name = re.sub(r"[-_.]+", "-", requirement.package).lower()
    return name if name in IMAGE_DISTRIBUTIONS or name.startswith(IMAGE_FAMILIES) else None


def refuse_image_packages(requirements: list[Requirement]) -> None:
    refused = [r.spec for r in requirements if image_package(r)]
    if refused:
        raise RefusedRequirement(
            f"{REQUIREMENTS_FILE.name}: {', '.join(refused)} would replace what the image "
            f"ships ({', '.join(IMAGE_DISTRIBUTIONS)}): remove the line; the image's own "
            "version is used"
        )


def is_importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package is missing
        return False


def ensure_dependencies(
    environ: Mapping[str, str], *, azure: bool, backend: str = "rsl_rl",
    requirements: list[Requirement] | None = None, video: bool = False,
) -> list[str]:
    """Install what is missing; return the pip specs installed (empty: nothing was needed).

    Raises MissingDependencyError naming the pip packages when something stays missing, and
    RefusedRequirement, before anything is installed, for a line naming an image package.
    """
    listed = read_requirements() if requirements is None else requirements
    refuse_image_packages(listed)
    missing_from_image = [pkg for pkg, module in IMAGE_PACKAGES[backend]
                          if not is_importable(module)]
    if missing_from_image:
        raise MissingDependencyError(
            "missing packages the image should ship (not installed by the launcher): "
            + " ".join(missing_from_image)
        )
    wanted = [r for r in listed if (azure or not r.azure_only) and (video or not r.video_only)]
    missing = [r for r in wanted if not is_importable(r.module)]
    if not missing:
        return []
    specs = [r.spec for r in missing]
    if environ.get("SKIP_PIP_INSTALL", "").strip() == "1":
        raise MissingDependencyError(
            "missing packages (SKIP_PIP_INSTALL=1, not installing): "
            + " ".join(specs)
            + f"; install them with: {sys.executable} -m pip install " + " ".join(specs)
        )
    _pip_install(specs)
    still_missing = [r.spec for r in missing if not _importable_after_install(r.module)]
    if still_missing:
        raise MissingDependencyError(
            "packages still missing after pip install: " + " ".join(still_missing)
        )
    return specs


def _pip_install(specs: list[str]) -> None:
    pins = []
    for name in PROTECTED_DISTRIBUTIONS:
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as constraints:
        constraints.write("\n".join(pins) + "\n")
    print(f"installing missing packages: {' '.join(specs)}", file=sys.stderr, flush=True)
    try:
        completed = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--no-input",
             "--disable-pip-version-check", "-c", constraints.name, *specs],
            capture_output=True,
            text=True,
        )
    finally:
        Path(constraints.name).unlink(missing_ok=True)
    if completed.returncode != 0:
        last_line = (completed.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise MissingDependencyError(
            f"missing packages could not be installed: {' '.join(specs)} (pip: {last_line})"
        )


def _importable_after_install(module: str) -> bool:
    importlib.invalidate_caches()
    return is_importable(module)
