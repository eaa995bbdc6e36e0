"""Tessera as separate ``tessera serve`` processes sharing a real Redis: what
the benchmarks measure, and what the multi-process tests drive.

A ``Deployment`` starts its own ``redis-server`` on a free port unless given
a Redis URL, then registries, an issuer and validators, each a process of
its own on a free port, all on one SQLite database under a directory.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import TracebackType

import grpc
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

TESSERA = str(Path(sys.executable).parent / "tessera")
_START_TIMEOUT = 60.0


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_serving(address: str, timeout: float = _START_TIMEOUT) -> None:
    """Block until a server's health check says SERVING."""
    deadline = time.monotonic() + timeout
    channel = grpc.insecure_channel(address)
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        while True:
            try:
                response = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing serving at {address} after {timeout}s")
            time.sleep(0.1)
    finally:
        channel.close()


def start_redis(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A redis-server of its own on a free port, and its URL, once it answers."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError(
            "redis-server is not installed; scripts/setup.sh --test installs it, "
            "or pass a Redis URL"
        )
    port = free_port()
    directory.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + _START_TIMEOUT
    try:
        while True:
            try:
                client.ping()
                return process, url
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    process.kill()
                    raise
                time.sleep(0.05)
    finally:
        client.close()


@dataclasses.dataclass
class _Process:
    service: str
    environment: dict[str, str]
    process: subprocess.Popen[bytes] | None = None


class Deployment:
    """Registries, an issuer and validators as separate processes."""

    def __init__(
        self,
        directory: Path,
        redis_url: str | None = None,
        registries: int = 1,
        validators: int = 2,
        heartbeat_seconds: float = 5.0,
    ) -> None:
        self.directory = directory
        self.redis_url = redis_url
        self._registries = registries
        self._validators = validators
        self._heartbeat = heartbeat_seconds
        self._redis: subprocess.Popen[bytes] | None = None
        self._processes: dict[str, _Process] = {}
        self.addresses: dict[str, str] = {}
        self.metrics_addresses: dict[str, str] = {}

    # Starting and stopping ------------------------------------------------

    def __enter__(self) -> Deployment:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start Redis (unless given), the registries, the issuer and the
        validators, and wait until each serves."""
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "logs").mkdir(exist_ok=True)
        if self.redis_url is None:
            self.redis_url = self._start_redis()

        registries = [f"registry-{n}" for n in range(1, self._registries + 1)]
        validators = [f"validator-{n}" for n in range(1, self._validators + 1)]
        for name in [*registries, "issuer", *validators]:
            self.addresses[name] = f"127.0.0.1:{free_port()}"
        base = {
            "TESSERA_DATA_DIR": str(self.directory / "data"),
            "TESSERA_REDIS_URL": self.redis_url,
            "TESSERA_METRICS_LISTEN": "",
            "TESSERA_LOG_LEVEL": "warning",
            "TESSERA_REGISTRY__CACHE_SYNC_INTERVAL_SECONDS": "1",
            "TESSERA_REGISTRY__WATCH_HEARTBEAT_SECONDS": str(self._heartbeat),
        }
        for name in registries:
            self._add(
                name, "registry", base, TESSERA_REGISTRY__LISTEN=self.addresses[name]
            )
        # The issuer records through the last registry; validators spread
        # over all of them, so entries cross processes on their way.
        self._add(
            "issuer",
            "issuer",
            base,
            TESSERA_ISSUER__LISTEN=self.addresses["issuer"],
            TESSERA_ISSUER__PUBLICATION_LISTEN=f"127.0.0.1:{free_port()}",
            TESSERA_ISSUER__REGISTRY_ADDRESS=self.addresses[registries[-1]],
        )
        for index, name in enumerate(validators):
            self.metrics_addresses[name] = f"127.0.0.1:{free_port()}"
            self._add(
                name,
                "validator",
                base,
                TESSERA_VALIDATOR__LISTEN=self.addresses[name],
                TESSERA_VALIDATOR__REGISTRY_ADDRESS=self.addresses[
                    registries[index % len(registries)]
                ],
                TESSERA_METRICS_LISTEN=self.metrics_addresses[name],
            )

        # The first registry migrates the database before anyone else uses it.
        self.launch(registries[0])
        wait_serving(self.addresses[registries[0]])
        for name in self._processes:
            if name != registries[0]:
                self.launch(name)
        for name in self._processes:
            try:
                wait_serving(self.addresses[name])
            except TimeoutError:
                raise RuntimeError(f"{name} did not start:\n{self.log(name)}") from None

    def _add(
        self, name: str, service: str, base: dict[str, str], **values: str
    ) -> None:
        environment = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("TESSERA_")
        }
        environment.update(base)
        environment.update(values)
        self._processes[name] = _Process(service, environment)

    def launch(self, name: str) -> None:
        """Start (or start again) one process, appending to its log."""
        entry = self._processes[name]
        log = open(self.directory / "logs" / f"{name}.log", "ab")  # noqa: SIM115 (the process keeps it)
        entry.process = subprocess.Popen(
            [TESSERA, "serve", entry.service],
            env=entry.environment,
            stdout=log,
            stderr=log,
        )
        log.close()

    def kill(self, name: str) -> None:
        """SIGKILL one process: no clean shutdown, no goodbye to watchers."""
        process = self._processes[name].process
        if process is not None:
            process.kill()
            process.wait(timeout=10)

    def restart(self, name: str) -> None:
        """Start a killed process again on its address and wait until it serves."""
        self.launch(name)
        wait_serving(self.addresses[name])

    def stop(self) -> None:
        """Stop every process, then Redis if this deployment started it."""
        running = [p.process for p in self._processes.values() if p.process]
        for process in running:
            process.terminate()
        for process in running:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        if self._redis is not None:
            self._redis.terminate()
            self._redis.wait(timeout=10)
            self._redis = None

    def _start_redis(self) -> str:
        self._redis, url = start_redis(self.directory / "redis")
        return url

    # Looking inside -------------------------------------------------------

    def log(self, name: str) -> str:
        path = self.directory / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def metric_samples(self, name: str) -> dict[str, float]:
        """Every sample of a validator's /metrics, by name and labels."""
        url = f"http://{self.metrics_addresses[name]}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                key = f"{sample.name}{{{labels}}}" if labels else sample.name
                samples[key] = sample.value
        return samples
