"""Dependencies first: find_spec checks, install only what is missing, never touch the image's
packages. The install test uses a real throwaway venv and a real wheel, offline."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from training.deps import (
    MissingDependencyError,
    Requirement,
    ensure_dependencies,
    read_requirements,
)

REPO_SRC = Path(__file__).resolve().parents[2] / "src"


def test_requirements_file_names_imports_and_azure_only_lines() -> None:
    by_package = {r.package: r for r in read_requirements()}
    assert by_package["mlflow"].module == "mlflow" and not by_package["mlflow"].azure_only
    assert by_package["azure-identity"].module == "azure.identity"
    assert by_package["azure-identity"].azure_only
    # The image's own packages are never in the install list.
    assert not {"torch", "numpy", "rsl-rl-lib", "isaaclab"} & set(by_package)


def test_all_present_installs_nothing() -> None:
    # SKIP_PIP_INSTALL: were anything missing this would raise instead of installing.
    assert ensure_dependencies({"SKIP_PIP_INSTALL": "1"}, azure=False) == []


def test_skip_pip_install_names_the_missing_pip_packages() -> None:
    missing = Requirement("osmo-inline-absent>=1", "osmo-inline-absent", "osmo_inline_absent",
                          False)
    with pytest.raises(MissingDependencyError, match="osmo-inline-absent>=1") as raised:
        ensure_dependencies({"SKIP_PIP_INSTALL": "1"}, azure=False, requirements=[missing])
    assert "SKIP_PIP_INSTALL=1" in str(raised.value)


def test_azure_requirements_only_matter_with_a_workspace() -> None:
    azure_only = Requirement("osmo-inline-absent", "osmo-inline-absent", "osmo_inline_absent",
                             True)
    assert ensure_dependencies({"SKIP_PIP_INSTALL": "1"}, azure=False,
                               requirements=[azure_only]) == []
    with pytest.raises(MissingDependencyError):
        ensure_dependencies({"SKIP_PIP_INSTALL": "1"}, azure=True, requirements=[azure_only])


def test_video_requirements_only_matter_with_video() -> None:
    by_package = {r.package: r for r in read_requirements()}
    assert by_package["imageio-ffmpeg"].module == "imageio_ffmpeg"
    assert by_package["PyOpenGL"].module == "OpenGL" and by_package["PyOpenGL"].video_only
    video_only = Requirement("osmo-inline-absent", "osmo-inline-absent", "osmo_inline_absent",
                             False, video_only=True)
    assert ensure_dependencies({"SKIP_PIP_INSTALL": "1"}, azure=False,
                               requirements=[video_only]) == []
    with pytest.raises(MissingDependencyError, match="osmo-inline-absent"):
        ensure_dependencies({"SKIP_PIP_INSTALL": "1"}, azure=False, video=True,
                            requirements=[video_only])


def _write_wheel(directory: Path, name: str, version: str) -> Path:
    """A minimal, valid pure-Python wheel (what `pip wheel` would produce for one module)."""
    files = {
        f"{name}.py": f"VERSION = {version!r}\n",
        f"{name}-{version}.dist-info/METADATA":
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{name}-{version}.dist-info/WHEEL":
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record_lines = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record_lines.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    record_path = f"{name}-{version}.dist-info/RECORD"
    files[record_path] = "\n".join(record_lines + [f"{record_path},,"]) + "\n"
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


@pytest.mark.slow
def test_installs_only_the_missing_requirement_into_the_running_python(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _write_wheel(wheels, "osmo_inline_probe", "1.0")
    env_dir = tmp_path / "venv"
    # The image's packages (torch, rsl-rl, mlflow...) come from the outer venv, read-only.
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    (env_dir / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
     / "site-packages" / "outer.pth").write_text(
        "\n".join(p for p in sys.path if p.endswith("site-packages")) + "\n")
    code = (
        "import sys, torch; from training.deps import Requirement, ensure_dependencies\n"
        "reqs=[Requirement('osmo_inline_probe==1.0','osmo_inline_probe','osmo_inline_probe',"
        "False), Requirement('mlflow','mlflow','mlflow',False)]\n"
        "print(ensure_dependencies({}, azure=False, requirements=reqs))\n"
        "import osmo_inline_probe; print(osmo_inline_probe.VERSION, torch.__version__)\n"
    )
    result = subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_SRC), "PIP_NO_INDEX": "1",
             "PIP_FIND_LINKS": str(wheels), "PIP_CONSTRAINT": "", "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    installed, versions = result.stdout.strip().splitlines()
    assert installed == "['osmo_inline_probe==1.0']"  # mlflow was present: not reinstalled
    import torch

    assert versions == f"1.0 {torch.__version__}"  # the image's torch untouched


def test_launcher_without_the_image_packages_exits_3(tmp_path: Path) -> None:
    env_dir = tmp_path / "bare"
    venv.EnvBuilder(with_pip=False).create(env_dir)  # no torch, no rsl-rl
    result = subprocess.run(
        [str(env_dir / "bin" / "python"), "-m", "training.launch", "--task", "Ant-v5"],
        capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_SRC)},
    )
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: missing packages the image should ship")
    assert "torch" in result.stderr and "rsl-rl-lib" in result.stderr
