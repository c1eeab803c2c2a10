"""docker/: the image builds and runs `shammie --help` (only where a Docker engine is
reachable), and the cluster launcher / KubeRay files are valid and run `shammie run`."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
DOCKER = REPO / "docker"


def docker_engine_reason() -> str | None:
    """None when `docker info` succeeds, else why the build test is skipped."""
    if shutil.which("docker") is None:
        return "no docker command on PATH"
    try:
        result = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"`docker info` failed: {e}"
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        return f"no Docker engine reachable (`docker info`: {detail[-1] if detail else result.returncode})"
    return None


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DOCKER / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def test_dockerfile_uses_python_slim_uv_and_copies_only_existing_paths():
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    runs = " ".join(rest for op, rest in instructions if op == "RUN")
    assert "uv pip install --system -e ." in runs
    assert "download.pytorch.org/whl/cpu" in runs  # CPU torch, only with WITH_TORCH=1
    copied = [shlex.split(rest)[:-1] for op, rest in instructions if op == "COPY"]
    sources = [s for group in copied for s in group]
    assert sources, "the Dockerfile copies nothing"
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: not in the repository"
    # every package folder of the install must be in the image
    pyproject = (REPO / "pyproject.toml").read_text()
    for folder in re.findall(r'"shammie\.\w+" = "(\w+)"', pyproject):
        assert f"{folder}/" in sources, f"{folder}/ is not copied into the image"


def test_dockerignore_keeps_the_virtualenv_and_job_outputs_out_of_the_context():
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", ".git", "out/"} <= set(ignored)


def test_cluster_launcher_config_passes_rays_own_schema():
    pytest.importorskip("jsonschema")
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((DOCKER / "cluster.yaml").read_text())
    validate_config(prepare_config(config))  # what `ray up` does; raises on an unknown or mistyped field
    assert config["docker"]["image"].endswith("shammie:latest")
    assert any("ray start --head" in c for c in config["head_start_ray_commands"])
    assert any("ray start --address=$RAY_HEAD_IP:6379" in c for c in config["worker_start_ray_commands"])


def test_rayjob_runs_shammie_run_on_a_config_shipped_in_the_image():
    job = yaml.safe_load((DOCKER / "rayjob.yaml").read_text())
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:2] == ["shammie", "run"]
    config = argv[2]
    assert config.startswith("/opt/shammie/") and (REPO / config.removeprefix("/opt/shammie/")).exists()
    sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    assert any(s.startswith("output=s3://") for s in sets)  # workers on other pods need shared storage
    from shammie.jobs.config import load_config

    load_config(str(REPO / config.removeprefix("/opt/shammie/")), sets)  # the overrides are valid keys
    cluster = job["spec"]["rayClusterSpec"]
    images = [c["image"] for c in cluster["headGroupSpec"]["template"]["spec"]["containers"]]
    for group in cluster["workerGroupSpecs"]:
        images += [c["image"] for c in group["template"]["spec"]["containers"]]
    assert len(set(images)) == 1
    import ray

    assert cluster["rayVersion"] == ray.__version__


@pytest.mark.slow
def test_image_builds_and_runs_shammie_help():
    reason = docker_engine_reason()
    if reason:
        pytest.skip(reason)
    tag = f"shammie-test:{uuid.uuid4().hex[:8]}"
    try:
        subprocess.run(["docker", "build", "-f", str(DOCKER / "Dockerfile"), "-t", tag, str(REPO)],
                       check=True, timeout=3600)
        result = subprocess.run(["docker", "run", "--rm", tag, "shammie", "--help"],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        assert "crawl" in result.stdout and "run" in result.stdout and "report" in result.stdout
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
