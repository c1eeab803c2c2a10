"""An unreachable --ray-address / RAY_ADDRESS fails in seconds with exit 2, before any folder is created.

Run as the user runs them (the `shammie` CLI in a subprocess, no Ray started in this
process): ray.init on such an address retries for minutes, so the check must come first.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from warc_fixtures import FixturePage, english_paragraphs, html_page, write_warc

# The brief's bound for "fails fast"; the check itself takes 5-15 s at most.
FAIL_WITHIN_S = 30


@pytest.fixture(scope="module")
def warc_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("warcs") / "a.warc.gz"
    write_warc(path, [FixturePage("http://www.example.org/a", html_page(english_paragraphs(3)), "kept")])
    return path


@pytest.fixture
def silent_listener():
    """A port with a plain TCP listener that accepts connections and never answers: not Ray."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(timeout=5)
    for conn in accepted:
        conn.close()
    server.close()


def run_shammie(args: list[str], env_extra: dict | None = None) -> tuple[subprocess.CompletedProcess, float]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(env_extra or {})
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "shammie.jobs.cli", *args], capture_output=True, text=True,
                          env=env, timeout=FAIL_WITHIN_S * 4)
    return proc, time.monotonic() - started


def assert_fails_fast(proc: subprocess.CompletedProcess, seconds: float, output: Path, address: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert seconds < FAIL_WITHIN_S, f"took {seconds:.1f} s"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert address in lines[0] and "Ray cluster" in lines[0], lines[0]
    assert not output.exists(), "the output folder was created before the Ray address was checked"


def test_crawl_with_a_refused_ray_address_fails_fast(warc_file, tmp_path):
    out = tmp_path / "job"
    proc, seconds = run_shammie(["crawl", str(warc_file), "--output", str(out), "--ray-address", "127.0.0.1:1",
                                 "--no-progress"])
    assert_fails_fast(proc, seconds, out, "127.0.0.1:1")
    assert "nothing answers" in proc.stderr


def test_crawl_with_a_listener_that_is_not_ray_fails_fast(warc_file, tmp_path, silent_listener):
    out = tmp_path / "job"
    proc, seconds = run_shammie(["crawl", str(warc_file), "--output", str(out), "--ray-address", silent_listener,
                                 "--no-progress"])
    assert_fails_fast(proc, seconds, out, silent_listener)
    assert "not a Ray cluster" in proc.stderr


def test_a_bad_RAY_ADDRESS_fails_fast_too(warc_file, tmp_path):
    out = tmp_path / "job"
    proc, seconds = run_shammie(["crawl", str(warc_file), "--output", str(out), "--no-progress"],
                                env_extra={"RAY_ADDRESS": "127.0.0.1:1"})
    assert_fails_fast(proc, seconds, out, "127.0.0.1:1")


def test_shammie_run_checks_the_address_before_creating_the_job(warc_file, tmp_path, silent_listener):
    out = tmp_path / "job"
    config = tmp_path / "job.yaml"
    config.write_text(f"name: probe\ninput:\n  - {warc_file}\noutput: {out}\ncrawl:\n  languages: [en]\n"
                      "dedup:\n  enabled: false\nedu:\n  enabled: false\nshard:\n  enabled: false\n")
    for address in ("127.0.0.1:1", silent_listener):
        proc, seconds = run_shammie(["run", str(config), "--ray-address", address, "--no-progress"])
        assert_fails_fast(proc, seconds, out, address)


def test_no_address_means_the_embedded_ray_and_nothing_is_probed(monkeypatch, not_connected):
    from shammie.pipeline import ray_runtime

    monkeypatch.delenv("RAY_ADDRESS", raising=False)

    def no_connection(*args, **kwargs):
        raise AssertionError("the embedded local Ray needs no reachability check")

    monkeypatch.setattr(socket, "create_connection", no_connection)
    ray_runtime.check_ray_address(None)
    ray_runtime.check_ray_address("local")


@pytest.fixture
def not_connected(monkeypatch):
    """In-process checks as a fresh driver sees them, even after other tests joined a Ray session here."""
    from shammie.pipeline import ray_runtime

    monkeypatch.setattr(ray_runtime, "_connected", lambda: False)


def test_a_ray_client_address_with_nothing_behind_it_fails_in_process_too(not_connected):
    from shammie.pipeline.errors import InputError
    from shammie.pipeline.ray_runtime import check_ray_address

    started = time.monotonic()
    with pytest.raises(InputError, match=r"'ray://127.0.0.1:1'.*nothing answers on 127.0.0.1:1"):
        check_ray_address("ray://127.0.0.1:1")
    assert time.monotonic() - started < FAIL_WITHIN_S


@pytest.mark.parametrize("address", ["127.0.0.1:notaport", "127.0.0.1:70000", ":6379"])
def test_a_malformed_address_is_named(address, not_connected):
    from shammie.pipeline.errors import InputError
    from shammie.pipeline.ray_runtime import check_ray_address

    with pytest.raises(InputError, match="is not HOST:PORT"):
        check_ray_address(address)


TOKEN = "shammie-test-token-6c0f2a1e9b7d4c3a"


@contextlib.contextmanager
def child_cluster(mode: str) -> Iterator[str]:
    """The GCS address of a Ray started in a child process (address="local"), with Ray's token
    authentication off ("disabled") or on ("token", with TOKEN). The mode is set explicitly: Ray
    2.60 turns it on by default for a new local cluster, with the user-wide ~/.ray/auth_token."""
    script = ("import ray, sys, time; ray.init(address='local', num_cpus=1, include_dashboard=False); "
              "print(ray.get_runtime_context().gcs_address, flush=True); sys.stdin.read(); ray.shutdown()")
    env = {**clean_env(), "RAY_AUTH_MODE": mode, **({"RAY_AUTH_TOKEN": TOKEN} if mode == "token" else {})}
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        address = child.stdout.readline().strip()
        assert address, "the child Ray did not start"
        yield address
    finally:
        child.stdin.close()
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


@pytest.fixture(scope="module")
def open_cluster() -> Iterator[str]:
    with child_cluster("disabled") as address:
        yield address


@pytest.fixture(scope="module")
def token_cluster() -> Iterator[str]:
    with child_cluster("token") as address:
        yield address


def clean_env() -> dict[str, str]:
    """This environment without any Ray address or auth setting of the user's."""
    drop = ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
    return {**{k: v for k, v in os.environ.items() if k not in drop}, "RAY_USAGE_STATS_ENABLED": "0"}


def check_in_child(address: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    """check_ray_address as a fresh driver runs it; exit 2 and the message on an InputError."""
    script = ("import sys\nfrom shammie.pipeline.errors import InputError\n"
              "from shammie.pipeline.ray_runtime import check_ray_address\n"
              "try:\n    check_ray_address(sys.argv[1])\nexcept InputError as e:\n"
              "    print(e, file=sys.stderr); sys.exit(2)\n")
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", script, address], capture_output=True, text=True, env=env,
                          timeout=FAIL_WITHIN_S * 2)
    return proc, time.monotonic() - started


@pytest.mark.parametrize("cluster", ["open_cluster", "token_cluster"])
def test_a_running_ray_gcs_passes_the_check(cluster, request, tmp_path):
    """The check must not refuse a cluster the driver can join: auth off, or on with the right token."""
    address = request.getfixturevalue(cluster)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    env = {**clean_env(), **({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_file)}
                             if cluster == "token_cluster" else {})}
    check, _ = check_in_child(address, env)
    assert check.returncode == 0, check.stderr


def test_a_cluster_with_token_auth_refuses_a_driver_without_the_token_in_seconds(token_cluster, tmp_path):
    """Ray's own ray.init retries an authentication refusal for ~20 s of warnings; the check names the fix."""
    address = token_cluster
    home = tmp_path / "home"  # no ~/.ray/auth_token: nothing this machine has would be accepted
    home.mkdir()
    no_mode, seconds = check_in_child(address, {**clean_env(), "HOME": str(home)})
    assert no_mode.returncode == 2 and seconds < FAIL_WITHIN_S, (no_mode.stderr, seconds)
    assert len(no_mode.stderr.strip().splitlines()) == 1, no_mode.stderr
    assert "requires Ray token authentication" in no_mode.stderr and "RAY_AUTH_MODE=token" in no_mode.stderr
    assert "ray get-auth-token" in no_mode.stderr

    (home / ".ray").mkdir()
    (home / ".ray" / "auth_token").write_text(TOKEN)  # the head's token, but the driver would not send it
    hint, _ = check_in_child(address, {**clean_env(), "HOME": str(home)})
    assert hint.returncode == 2 and "set RAY_AUTH_MODE=token (the token in" in hint.stderr, hint.stderr
    assert "auth_token is accepted by this cluster" in hint.stderr, hint.stderr

    wrong, _ = check_in_child(address, {**clean_env(), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "not-it"})
    assert wrong.returncode == 2 and "refused the token from RAY_AUTH_TOKEN" in wrong.stderr, wrong.stderr


def test_the_cli_names_the_token_fix_and_creates_nothing(token_cluster, warc_file, tmp_path):
    address = token_cluster
    out = tmp_path / "job"
    proc, seconds = run_shammie(["crawl", str(warc_file), "--output", str(out), "--ray-address", address,
                                 "--no-progress"], env_extra={"HOME": str(tmp_path), "RAY_AUTH_MODE": "disabled"})
    assert_fails_fast(proc, seconds, out, address)
    assert "requires Ray token authentication" in proc.stderr
