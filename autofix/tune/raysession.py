"""The Ray a run uses: a cluster it joins, or an embedded local Ray on loopback only.

Only this module starts, joins or stops Ray. Without ``-v`` Ray's own logging goes to the run's
``driver.log``; a cluster that refuses the connection for want of a token is bad input with a
hint (exit 2); the embedded Ray binds every component to 127.0.0.1 (:func:`loopback_only`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from autofix.errors import InputError, Problem
from autofix.spec.schema import Spec

__all__ = ["DRIVER_LOG", "cluster_address", "loopback_only", "ray_logs", "ray_session"]

DRIVER_LOG = "driver.log"  # what Ray logged without -v, and the traceback of a failure


def cluster_address(spec: Spec, address: str | None) -> str | None:
    """The Ray cluster to join (``--address``, ``ray.address``, ``$RAY_ADDRESS``), or None: embedded."""
    return address or spec.ray.address or os.environ.get("RAY_ADDRESS") or None


@contextlib.contextmanager
def ray_session(spec: Spec, address: str | None, verbose: bool, log: Path | None = None) -> Iterator[None]:
    """Join the given cluster, or start an embedded local Ray that listens on loopback only.

    Without ``verbose``, what Ray's native code writes to stderr while it starts or connects
    (one warning a second while a cluster refuses the connection) goes to ``log``."""
    import ray

    if ray.is_initialized():  # the caller (a notebook, the test session) owns Ray
        yield
        return
    address = cluster_address(spec, address)
    if not verbose:  # no Ray log spam by default (-v shows it)
        logging.getLogger("ray").setLevel(logging.ERROR)
    with contextlib.ExitStack() as stack:
        if address:
            with _stderr_to(None if verbose else log):
                _connect(ray, address, verbose)
        else:
            dashboard = stack.enter_context(_dashboard_for_train(spec.ray.distributed is not None))
            stack.enter_context(loopback_only())
            with _stderr_to(None if verbose else log):
                ray.init(num_cpus=spec.ray.num_cpus, log_to_driver=verbose, _node_ip_address="127.0.0.1",
                         logging_level=logging.INFO if verbose else logging.ERROR, **dashboard)
        try:
            yield
        finally:
            ray.shutdown()


@contextlib.contextmanager
def _stderr_to(log: Path | None) -> Iterator[None]:
    """Point file descriptor 2 at ``log`` (appending) for the block; nothing when None."""
    if log is None:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        target = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError:
        os.close(saved)
        yield
        return
    os.dup2(target, 2)
    os.close(target)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _connect(ray: Any, address: str, verbose: bool) -> None:
    """``ray.init(address)``; a cluster that wants a token the client does not send is bad input
    with the hint (Ray's own error names neither the variable nor the fix in one line)."""
    try:
        ray.init(address=address, log_to_driver=verbose)
    except Exception as exc:  # only an authentication failure is re-worded; the rest re-raised
        if not _auth_failure(exc):
            raise
        mode = os.environ.get("RAY_AUTH_MODE", "")
        raise InputError([Problem(address, None, "--address", (
            f"the cluster refused the connection: it requires token authentication "
            f"(RAY_AUTH_MODE is {mode!r}, not 'token'); run autofix with RAY_AUTH_MODE=token and the "
            "cluster's token in ~/.ray/auth_token, $RAY_AUTH_TOKEN_PATH or $RAY_AUTH_TOKEN"))]) from None


def _auth_failure(exc: BaseException | None) -> bool:
    seen = 0
    while exc is not None and seen < 10:
        if type(exc).__name__ == "AuthenticationError" or "InvalidAuthToken" in str(exc) \
                or "Unauthenticated" in str(exc):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """Keep every process of the embedded Ray on 127.0.0.1 (measured: docs/faults.md).

    Ray 2.60 turns ``_node_ip_address="127.0.0.1"`` into the machine's address
    (``ray._private.services.resolve_ip_for_localhost``), so the GCS, raylet, agents and workers
    listened on that address and on all interfaces. It keeps the loopback address only where it
    runs single-node by design (macOS and Windows), decided by ``ray_constants.ENABLE_RAY_CLUSTER``
    from ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``; set to 0 here, every component binds loopback.
    The variable is read when Ray is imported, in this process and in each one Ray starts: so it
    is set in the environment (the children) and on the imported constant (this process).
    """
    try:
        from ray._private import ray_constants
    except ImportError:  # a Ray without it (or a stand-in in tests): the environment alone
        ray_constants = None  # type: ignore[assignment]  # read with getattr(..., None) below
    key, previous = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    saved = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    os.environ[key] = "0"
    if ray_constants is not None:
        ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if ray_constants is not None:
            ray_constants.ENABLE_RAY_CLUSTER = saved
        if previous is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = previous


@contextlib.contextmanager
def ray_logs(out: Path, verbose: bool) -> Iterator[None]:
    """Without ``-v``, what Ray and Tune log (a failing trial's traceback, warnings) goes to
    ``OUTPUT/driver.log`` instead of the terminal, which gets one line per event from autofix."""
    logger = logging.getLogger("ray")
    if verbose:
        yield
        return
    saved = (logger.level, list(logger.handlers))
    handler = logging.FileHandler(out / DRIVER_LOG, encoding="utf-8", delay=True)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.handlers = [handler]
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        handler.close()
        logger.handlers = saved[1]
        logger.setLevel(saved[0])


@contextlib.contextmanager
def _dashboard_for_train(train: bool) -> Iterator[dict[str, Any]]:
    """The dashboard arguments of an embedded ``ray.init``: on, on loopback, for Ray Train.

    Train's placement-group cleaner asks the State API (a dashboard module) whether a stopped
    run's controller is gone; without the dashboard the group is never released and the next
    attempt waits forever (docs/ray-tune.md). The cleaner finds the API through
    ``RAY_API_SERVER_ADDRESS``, else by auto-detection, which fails ("Found multiple active Ray
    instances") on a host running several Rays: so the port is chosen here and the variable
    set before Ray starts, for every process Ray spawns to inherit; restored afterwards.
    """
    if not train:
        yield {"include_dashboard": False}
        return
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    key, previous = "RAY_API_SERVER_ADDRESS", os.environ.get("RAY_API_SERVER_ADDRESS")
    os.environ[key] = f"http://127.0.0.1:{port}"
    try:
        yield {"include_dashboard": True, "dashboard_host": "127.0.0.1", "dashboard_port": port}
    finally:
        if previous is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = previous
