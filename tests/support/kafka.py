"""A real Kafka broker for the integration tests, found or started on demand.

`provide_broker()` uses, in order: the broker named in OFFERLETTERS_TEST_KAFKA,
a testcontainers Kafka container when Docker works, or a local broker started
by scripts/kafka-broker. Having none is an error, never a skip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["KafkaBroker", "provide_broker"]

REPO_ROOT = Path(__file__).resolve().parents[2]
BROKER_SCRIPT = REPO_ROOT / "scripts" / "kafka-broker"
BOOTSTRAP_ENV = "OFFERLETTERS_TEST_KAFKA"

# The script waits up to 120 s for readiness; a first run also fetches jars.
SCRIPT_START_TIMEOUT_S = 600.0
# The script sends SIGKILL after 30 s of waiting for a clean shutdown.
SCRIPT_STOP_TIMEOUT_S = 60.0
DOCKER_PROBE_TIMEOUT_S = 15.0
CONNECT_TIMEOUT_S = 5.0
# Free ports can be taken by another process before the broker binds them.
PORT_ATTEMPTS = 3


class KafkaBroker:
    """A broker the tests can reach, and which cannot be restarted.

    Subclasses own a broker they started; this base stands for one that
    belongs to someone else, so `stop()` leaves it alone.
    """

    def __init__(self, bootstrap_servers: str, origin: str) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.origin = origin

    def restart(self) -> None:
        """Stop the broker and start it again in place, keeping its data."""
        raise RuntimeError(
            f"cannot restart the Kafka broker from {self.origin}: only one "
            f"started by {BROKER_SCRIPT.name} can restart in place"
        )

    def stop(self) -> None:
        """Release the broker; one that belongs to someone else keeps running."""


class _ScriptBroker(KafkaBroker):
    """A broker run by scripts/kafka-broker on loopback, with its own data dir."""

    def __init__(self, port: int, controller_port: int) -> None:
        super().__init__(f"127.0.0.1:{port}", origin=BROKER_SCRIPT.name)
        self.run_dir = REPO_ROOT / ".cache" / "kafka-run" / str(port)
        self._port_args = (
            "--port",
            str(port),
            "--controller-port",
            str(controller_port),
            "--dir",
            str(self.run_dir),
        )

    def start(self, *, keep: bool = False) -> None:
        """Start the broker and wait until it serves requests."""
        keep_args = ("--keep",) if keep else ()
        _run_script("start", *self._port_args, *keep_args)

    def restart(self) -> None:
        """Stop the broker and start it again on the same ports and data dir."""
        self.stop()
        self.start(keep=True)

    def stop(self) -> None:
        """Stop the broker; safe to call twice."""
        _run_script("stop", *self._port_args)


class _ContainerBroker(KafkaBroker):
    """A broker in a testcontainers Kafka container."""

    def __init__(self, container: Any) -> None:
        super().__init__(container.get_bootstrap_server(), origin="testcontainers")
        self._container = container

    def stop(self) -> None:
        """Remove the container."""
        self._container.stop()


class _ScriptError(RuntimeError):
    """scripts/kafka-broker failed; carries what it said on stderr."""

    def __init__(self, args: tuple[str, ...], stderr: str) -> None:
        tail = "\n".join(stderr.strip().splitlines()[-40:])
        super().__init__(f"{BROKER_SCRIPT} {' '.join(args)} failed:\n{tail}")
        self.stderr = stderr


def _run_script(*args: str) -> str:
    """Run scripts/kafka-broker and return the last line it printed on stdout."""
    timeout_s = SCRIPT_START_TIMEOUT_S if args[0] == "start" else SCRIPT_STOP_TIMEOUT_S
    try:
        done = subprocess.run(
            [str(BROKER_SCRIPT), *args],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(
            f"{BROKER_SCRIPT} {' '.join(args)} still ran after {timeout_s:.0f} s"
        ) from exc

    if done.returncode != 0:
        raise _ScriptError(args, done.stderr)

    lines = done.stdout.strip().splitlines()
    return lines[-1] if lines else ""


def _free_ports(count: int) -> list[int]:
    """Loopback ports the kernel just handed out, held together so they differ."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def _outside_broker(bootstrap_servers: str) -> KafkaBroker:
    """The broker named in the environment, checked to accept connections."""
    host, _, port = bootstrap_servers.split(",")[0].strip().rpartition(":")
    try:
        with socket.create_connection(
            (host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S
        ):
            pass
    except (OSError, ValueError) as exc:
        raise RuntimeError(
            f"{BOOTSTRAP_ENV}={bootstrap_servers!r} names no reachable Kafka "
            f"broker: {exc}"
        ) from exc

    return KafkaBroker(bootstrap_servers, origin=BOOTSTRAP_ENV)


def _docker_works() -> bool:
    """True if the docker CLI can reach a Docker engine."""
    if shutil.which("docker") is None:
        return False

    try:
        probe = subprocess.run(
            ["docker", "info"],
            capture_output=True,
            timeout=DOCKER_PROBE_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def _container_broker() -> KafkaBroker:
    """A broker in a fresh KRaft container; ImportError if testcontainers is absent."""
    from testcontainers.kafka import KafkaContainer

    container = KafkaContainer().with_kraft()
    container.start()
    try:
        return _ContainerBroker(container)
    except BaseException:
        container.stop()
        raise


def _script_broker() -> _ScriptBroker:
    """A broker started by scripts/kafka-broker on free loopback ports."""
    for attempt in range(1, PORT_ATTEMPTS + 1):
        port, controller_port = _free_ports(2)
        broker = _ScriptBroker(port, controller_port)
        try:
            broker.start()
        except _ScriptError as exc:
            if "already in use" not in exc.stderr or attempt == PORT_ATTEMPTS:
                raise
        else:
            return broker
    raise AssertionError("unreachable: the last attempt returns or raises")


@contextlib.contextmanager
def provide_broker() -> Iterator[KafkaBroker]:
    """Yield a reachable Kafka broker, stopping it afterwards if it was ours."""
    outside = os.environ.get(BOOTSTRAP_ENV, "").strip()
    if outside:
        yield _outside_broker(outside)
        return

    broker: KafkaBroker | None = None
    reasons: list[str] = [f"{BOOTSTRAP_ENV} is not set"]
    if not _docker_works():
        reasons.append("testcontainers: `docker info` fails")
    else:
        try:
            broker = _container_broker()
        except ImportError:
            reasons.append("testcontainers: the package is not installed")
        except Exception as exc:
            # Docker works but the container did not start (say, no image
            # registry): the script may still do, and the reason is kept.
            reasons.append(f"testcontainers: {exc!r}")

    if broker is None:
        try:
            broker = _script_broker()
        except (OSError, RuntimeError) as exc:
            reasons.append(f"{BROKER_SCRIPT.name}: {exc}")
            raise RuntimeError(
                "NO KAFKA BROKER for the integration tests. Tried, in order:\n- "
                + "\n- ".join(reasons)
                + f"\nSet {BOOTSTRAP_ENV}=host:port, or install JDK 17+ and Maven "
                f"so {BROKER_SCRIPT} can run one."
            ) from exc

    try:
        yield broker
    finally:
        broker.stop()
        if isinstance(broker, _ScriptBroker):
            shutil.rmtree(broker.run_dir, ignore_errors=True)
