"""Connecting to Ray: the embedded default or a cluster.

No `--ray-address` and no `RAY_ADDRESS`: start a local Ray in this process, sized
to the machine (or to `--workers`). With an address: join that cluster, after
checking in seconds that it answers as a Ray GCS and accepts this driver (Ray's
token authentication, `RAY_AUTH_MODE=token`, docs/jobs.md), and that a local job
directory is not used on a cluster spanning several hosts (`check_job_location`).
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import sys
import time

from shammie.pipeline import storage
from shammie.pipeline.errors import InputError

# An unreachable address makes ray.init retry for minutes: these bound the check made before
# any work (connect, then the gRPC handshake a Ray GCS answers, then one GCS call).
CONNECT_TIMEOUT_S = 5.0
HANDSHAKE_TIMEOUT_S = 10.0
RPC_TIMEOUT_S = 5.0
DEFAULT_GCS_PORT = 6379
DEFAULT_PORTS = {"ray": 10001, "http": 80, "https": 443}  # Ray Client, and dashboard URLs
# Ray's token authentication (Ray >= 2.52): the mode and where a driver finds the token, in Ray's order.
AUTH_MODE_ENV = "RAY_AUTH_MODE"
TOKEN_ENV, TOKEN_PATH_ENV = "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"
DEFAULT_TOKEN_PATH = os.path.join("~", ".ray", "auth_token")
SHARED_FS_ENV = "SHAMMIE_SHARED_FS"


def ray_address(address: str | None = None) -> str | None:
    """The cluster to join: `address`, else $RAY_ADDRESS; None for the embedded local Ray."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    return None if address == "local" else address


def check_ray_address(address: str | None = None) -> None:
    """Fail in seconds, with an InputError naming the address, when the Ray cluster to join cannot be reached.

    Nothing to check for the embedded local Ray (no address), or when this process is
    already connected (init_ray then uses that session). `ray://` (Ray Client) and
    `http(s)://` addresses are checked for a listener only; a plain `host:port` must
    also answer as a Ray GCS does."""
    address = ray_address(address)
    if not address:
        return
    if _connected():
        return
    # ray.init("auto") sends this machine's token when RAY_AUTH_MODE is unset; an explicit address does not
    auto = address == "auto" and AUTH_MODE_ENV not in os.environ
    if address == "auto":
        address = _auto_address()
    scheme, _, rest = address.rpartition("://")
    host, port = _host_port(rest, address, DEFAULT_PORTS.get(scheme.lower(), DEFAULT_GCS_PORT))
    where = f"cannot connect to the Ray cluster at {address!r}"
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        reason = "timed out" if isinstance(e, socket.timeout) else (e.strerror or type(e).__name__)
        raise InputError(f"{where}: nothing answers on {host}:{port} ({reason})") from None
    if scheme:  # ray:// (Ray Client) or a dashboard URL: ray.init checks the rest itself
        return
    if os.environ.get("RAY_USE_TLS", "").lower() in ("1", "true"):
        return  # the GCS speaks gRPC over TLS, with certificates this check does not have
    _check_gcs(f"{host}:{port}" if ":" not in host else f"[{host}]:{port}", where, auto=auto)


def _connected() -> bool:
    """This process already joined a Ray session (without importing Ray when it did not)."""
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


def _auto_address() -> str:
    """RAY_ADDRESS=auto: the cluster `ray start` recorded on this machine, found as ray.init would find it."""
    from ray._private.services import canonicalize_bootstrap_address

    try:
        found = canonicalize_bootstrap_address("auto")
    except Exception as e:  # ray's own lookup: a missing or stale record of a started cluster
        raise InputError(f"cannot find a running Ray cluster for address 'auto': {e}") from None
    if not found:
        raise InputError("cannot find a running Ray cluster for address 'auto' (no `ray start` on this machine)")
    return found


def _host_port(rest: str, address: str, default_port: int) -> tuple[str, int]:
    rest = rest.split("/", 1)[0]
    if rest.startswith("["):  # [IPv6]:port
        host, _, tail = rest[1:].partition("]")
        port_text = tail.lstrip(":")
    elif rest.count(":") == 1:
        host, _, port_text = rest.partition(":")
    else:
        host, port_text = rest, ""
    try:
        port = int(port_text) if port_text else default_port
    except ValueError:
        raise InputError(f"the Ray address {address!r} is not HOST:PORT") from None
    if not host or not 0 < port < 65536:
        raise InputError(f"the Ray address {address!r} is not HOST:PORT")
    return host, port


def _check_gcs(target: str, where: str, auto: bool = False) -> None:
    """Something listens on `target`: check that it is a Ray GCS (a gRPC server that knows Ray's calls)."""
    import grpc

    channel = grpc.insecure_channel(target)
    try:
        try:
            grpc.channel_ready_future(channel).result(timeout=HANDSHAKE_TIMEOUT_S)
        except grpc.FutureTimeoutError:
            raise InputError(f"{where}: {target} accepts connections but is not a Ray cluster (no gRPC answer "
                             f"within {HANDSHAKE_TIMEOUT_S:g} s); give the head node's GCS address, "
                             f"port {DEFAULT_GCS_PORT} by default") from None
        try:
            from ray.core.generated import gcs_service_pb2  # noqa: F401 - the stubs _ask_cluster_id uses
        except ImportError:  # generated stubs moved in this Ray version: the handshake has to do
            return
        token, source = auth_token(mode="token" if auto else None)
        try:
            _ask_cluster_id(channel, token)
        except grpc.RpcError as e:
            # any answer but "no such method" comes from a GCS
            if e.code() == grpc.StatusCode.UNIMPLEMENTED:
                raise InputError(f"{where}: {target} is a gRPC server but not a Ray GCS (a Ray Client port "
                                 "takes a ray:// address)") from None
            if e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise InputError(f"{where}: {target} did not answer ({e.code().name.lower()})") from None
            if e.code() == grpc.StatusCode.UNAUTHENTICATED:
                # ray.init would retry this for ~20 s of warnings, then fail without naming the cause
                accepted = None if token else _accepted_local_token(channel)
                raise InputError(f"{where}: {_auth_refusal(token, source, accepted)}") from None
    finally:
        channel.close()


def _ask_cluster_id(channel, token: str | None) -> None:
    """One GCS call, with the token as Ray's own clients send it (gRPC `authorization: Bearer ...`)."""
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

    gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel).GetClusterId(
        gcs_service_pb2.GetClusterIdRequest(), timeout=RPC_TIMEOUT_S,
        metadata=[("authorization", f"Bearer {token}")] if token else None)


def _accepted_local_token(channel) -> str | None:
    """Where a token this machine has (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token) lies that
    the cluster accepts, although the driver would not send it (RAY_AUTH_MODE is not token)."""
    import grpc

    token, source = auth_token(mode="token")
    if not token:
        return None
    try:
        _ask_cluster_id(channel, token)
    except grpc.RpcError:
        return None
    return source


def auth_token(mode: str | None = None) -> tuple[str | None, str]:
    """(the token a driver sends, where it came from) as Ray finds it: only when the mode (default:
    $RAY_AUTH_MODE) is token, then RAY_AUTH_TOKEN, the file RAY_AUTH_TOKEN_PATH names, or ~/.ray/auth_token."""
    mode = os.environ.get(AUTH_MODE_ENV, "") if mode is None else mode
    if mode.lower() != "token":
        return None, f"{AUTH_MODE_ENV} is not token"
    if os.environ.get(TOKEN_ENV, "").strip():
        return os.environ[TOKEN_ENV].strip(), TOKEN_ENV
    path = os.path.expanduser(os.environ.get(TOKEN_PATH_ENV) or DEFAULT_TOKEN_PATH)
    try:
        with open(path) as f:
            return f.read().strip() or None, path
    except OSError:
        return None, path


def _auth_refusal(token: str | None, source: str, accepted: str | None = None) -> str:
    """One line: why the cluster refused this driver, and the fix."""
    how = (f"give this machine the cluster's token ({TOKEN_ENV}=..., or the file {TOKEN_PATH_ENV} names, or "
           f"{DEFAULT_TOKEN_PATH}; `ray get-auth-token` on the head node prints it)")
    if os.environ.get(AUTH_MODE_ENV, "").lower() != "token":
        if accepted:
            return (f"the cluster requires Ray token authentication and this driver sends no token; set "
                    f"{AUTH_MODE_ENV}=token (the token in {accepted} is accepted by this cluster)")
        return (f"the cluster requires Ray token authentication and this driver sends no token; set "
                f"{AUTH_MODE_ENV}=token and {how} (docs/jobs.md)")
    if token is None:
        return f"the cluster requires Ray token authentication and {AUTH_MODE_ENV}=token but no token was found; {how}"
    return f"the cluster refused the token from {source}; {how}"


def cluster_hosts() -> set[str]:
    """The addresses of the alive nodes of the Ray session this process joined."""
    import ray

    return {str(n.get("NodeManagerAddress")) for n in ray.nodes() if n.get("Alive")}


def shared_filesystem_declared(flag: bool = False) -> bool:
    """`--shared-filesystem` (`shared_filesystem: true` in a job config), or SHAMMIE_SHARED_FS=1."""
    return flag or os.environ.get(SHARED_FS_ENV, "").lower() in ("1", "true", "yes")


def check_job_location(job: str, address: str | None = None, *, shared_filesystem: bool = False) -> None:
    """Refuse, before any work, a local job directory on a Ray cluster whose nodes are on several hosts.

    Workers write their outputs themselves, so on another host a local path is that
    host's disk: the driver would find outputs missing or stale and redo them forever.
    Fine when every node mounts the path (`--shared-filesystem`, SHAMMIE_SHARED_FS=1),
    for an object-store job, and for the embedded local Ray (one host)."""
    if storage.is_remote(job) or shared_filesystem_declared(shared_filesystem):
        return
    if not _connected():
        address = ray_address(address)
        if not address:
            return
        init_ray(address)
    hosts = cluster_hosts()
    if len(hosts) > 1:
        shown = ", ".join(sorted(hosts)[:3]) + (" ..." if len(hosts) > 3 else "")
        raise InputError(f"{job} is a local path but the Ray cluster spans {len(hosts)} hosts "
                         f"({shown}): workers on other hosts would write to their own disks. Use an s3:// job "
                         f"directory, or pass --shared-filesystem (or {SHARED_FS_ENV}=1) if every node mounts "
                         "it at this path")


# Wall seconds this process spent starting or joining Ray (`init_ray`): the runner subtracts what a
# stage spent here from its throughput and reports it apart (`ray_start_seconds`), since a small
# stage's docs/s would otherwise measure Ray's start-up, not the stage.
_START_SECONDS = [0.0]


def start_seconds() -> float:
    """Wall seconds spent in `init_ray` by this process so far."""
    return _START_SECONDS[0]


def init_ray(address: str | None = None, num_cpus: int | None = None) -> str:
    """Make sure Ray is initialised; return a short description of where we run."""
    import ray

    if ray.is_initialized():
        return "existing Ray session"
    started = time.monotonic()
    try:
        return _init_ray(ray, address, num_cpus)
    finally:
        _START_SECONDS[0] += time.monotonic() - started


def _init_ray(ray, address: str | None, num_cpus: int | None) -> str:
    address = ray_address(address)
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    # Workers started by Ray must import the same code as the driver; an
    # installed (or editable) `shammie` makes that true without a runtime_env.
    kwargs = dict(logging_level=logging.WARNING, log_to_driver=True)
    if address:
        check_ray_address(address)
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, ValueError, RuntimeError) as e:
            raise InputError(f"cannot connect to the Ray cluster at {address!r}: {e}") from None
        return f"Ray cluster at {address}"
    # address="local": always a new in-process Ray, even when `ray start` left a cluster on this machine
    ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False, **kwargs)
    # Registered after Ray's own exit hook, so it runs first (atexit is last in, first out).
    atexit.register(shutdown_local_ray)
    return f"local Ray ({num_cpus or os.cpu_count()} CPUs)"


def shutdown_local_ray() -> None:
    """Stop the embedded local Ray now, as the process ends, without Ray's exit-time waits.

    Why: Ray's own exit hook sleeps 0.5 s before it shuts down ("to make sure log messages
    finish printing") and then waits on the autoscaler monitor (see below): together a
    tenth of a small crawl's wall time. By the time this runs every task has returned its
    result; a line a worker logged in its last moments stays in the session's log files.
    Ray's hook, which runs after this one, then finds nothing left to stop."""
    stop_autoscaler_monitor()
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


def stop_autoscaler_monitor() -> bool:
    """Stop the local Ray's autoscaler monitor before `ray.shutdown()`; True if one was stopped.

    Why: at shutdown Ray stops its GCS first, then sends the monitor SIGTERM; the monitor's
    handler then tries to report its own exit to the stopped GCS, and Ray waits a full second
    before it kills it. That second was ~15% of a small crawl's fixed cost. A one-machine Ray
    has nothing to autoscale, so the monitor is stopped outright first; Ray's shutdown then
    finds it gone. This reads Ray's private process table: on any surprise it does nothing
    and Ray's own shutdown proceeds as before."""
    try:
        from ray._private import ray_constants
        from ray._private import worker as ray_worker

        node = ray_worker._global_node
        if node is None or not node.head:
            return False
        stopped = False
        for info in node.all_processes.get(ray_constants.PROCESS_TYPE_MONITOR, []):
            if info.process.poll() is None:
                info.process.kill()
                info.process.wait(timeout=2)
                stopped = True
        return stopped
    except Exception:  # noqa: BLE001 - an optimisation only; Ray's shutdown still runs
        return False


def cluster_cpus() -> int:
    import ray

    return int(ray.cluster_resources().get("CPU", 1))
