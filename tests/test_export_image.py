"""`mlbuild export image`: the Dockerfile the KFP tasks run in, pinned from the project's
environment record; written without a registry or a Docker daemon."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import Project


def test_dockerfile_pins_the_recorded_interpreter_and_packages(example_built: Project,
                                                               tmp_path: Path) -> None:
    record = example_built.read(".mlbuild/environment.yaml")
    python = re.search(r"^python: (\S+)$", record, re.M).group(1)  # type: ignore[union-attr]
    sklearn = re.search(r"^      scikit-learn: (\S+)$", record, re.M).group(1)  # type: ignore[union-attr]
    out = tmp_path / "Dockerfile.kfp"
    proc = example_built.run("export", "image", "-o", str(out), "--image", "reg.example/t:1")
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert f"FROM python:{python}-slim" in text
    assert f"'scikit-learn=={sklearn}'" in text
    assert "'mlbuild==" not in text  # mlbuild itself comes from MLBUILD_SPEC
    assert 'ARG MLBUILD_SPEC="mlbuild"' in text  # the example is not mlbuild's own repository
    assert "git" in text and "docker build -f" in text and "reg.example/t:1" in text
    assert "COPY . ." in text and 'ENTRYPOINT ["mlbuild"]' in text
    ignore = (example_built.path / ".dockerignore").read_text()
    assert ".dvc/config.local" in ignore and ".dvc/cache" in ignore  # credentials stay out


def test_two_stages_on_different_versions_cannot_share_an_image(example_built: Project,
                                                                 tmp_path: Path) -> None:
    record = example_built.path / ".mlbuild/environment.yaml"
    lines = record.read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("      numpy: "))
    lines[first] = "      numpy: 0.0.1"
    record.write_text("\n".join(lines) + "\n")
    out = tmp_path / "Dockerfile.kfp"
    proc = example_built.run("export", "image", "-o", str(out))
    assert proc.returncode == 2, proc.stderr
    assert "numpy" in proc.stderr and "one image cannot hold both" in proc.stderr
    assert not out.exists()


def test_a_project_without_an_environment_record_gets_the_default_python(
        project: Project, tmp_path: Path) -> None:
    out = tmp_path / "Dockerfile.kfp"
    assert project.run("export", "image", "-o", str(out)).returncode == 0
    assert "FROM python:3.11-slim" in out.read_text()
