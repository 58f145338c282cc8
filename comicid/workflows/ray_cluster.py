"""Connecting to a Ray cluster, the one way every ``--ray ADDRESS`` command does it (embed, import).

``ADDRESS`` is ``HOST:PORT`` of the head's GCS (``ray start --head --port=PORT``), ``auto`` for the
cluster of this node, or ``local`` for a private single-node cluster on the loopback interface that
lives as long as the command. A ``HOST:PORT`` nobody answers on fails within seconds with one line:
``ray.init`` itself keeps retrying an unreachable head for minutes.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from comicid.errors import ConfigError

#: ``--ray local`` starts a private single-node cluster on the loopback interface for this run.
LOCAL = "local"
#: Seconds to wait for the head's port to accept a connection before giving up.
CONNECT_TIMEOUT_S = 5.0


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Raise :class:`ConfigError` unless ``HOST:PORT`` accepts a TCP connection (``auto``/``ray://`` pass)."""
    if address == "auto" or address.startswith("ray://"):
        return
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"--ray {address!r}: give HOST:PORT of the cluster's head, auto, or local")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as error:
        raise ConfigError(f"cannot connect to the Ray cluster at {address!r}: {error} (is `ray start --head` "
                          "running there?)") from None


@contextmanager
def ray_cluster(address: str, num_cpus: int | None = None) -> Iterator[Any]:
    """Connect to the cluster at ``address`` (``HOST:PORT`` or ``auto``), or start a private local one for
    ``local`` (``num_cpus`` CPUs); disconnect (and stop the private cluster) afterwards. Yields ``ray``."""
    try:
        import ray
        import ray.data  # noqa: F401  (the pipelines; not loaded by ``import ray``)
    except ImportError:
        raise ConfigError("--ray needs the ray package: pip install 'comicid[ray]'") from None
    if ray.is_initialized():
        yield ray
        return
    if address == LOCAL:
        ray.init(num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1",
                 object_store_memory=256 * 1024**2, log_to_driver=False, configure_logging=False)
    else:
        check_reachable(address)
        try:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise ConfigError(f"cannot connect to the Ray cluster at {address!r}: {error}") from None
    # The commands show their own progress bar; Ray Data's bars and INFO lines would interleave with it.
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        yield ray
    finally:
        ray.shutdown()


def worker_count(ray: Any, workers: int | None) -> int:
    """``workers``, or one per CPU of the cluster."""
    return workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
