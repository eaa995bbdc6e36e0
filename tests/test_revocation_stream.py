"""The revocation stream across separate processes on a real Redis: two
registry processes fan every revocation out to the watchers of both, two
validator processes refuse a revoked certificate within the bound, and
``tessera revocations watch`` resumes without gaps after its registry
process is killed."""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from benchmarks.deployment import Deployment
from tessera.registry.v1 import registry_pb2
from tests.support import TESSERA, Clients, eventually, run, tessera_env

pytestmark = pytest.mark.slow
FRONTDOOR = "payments"
REVOKED = 7  # VALIDATION_REASON_REVOKED
# Long enough that within a test only the bus, not a heartbeat's look at
# the log, can bring an entry to a registry that did not commit it.
HEARTBEAT_SECONDS = 30.0


class Watcher:
    """``tessera revocations watch`` as a process, its lines read as they come."""

    def __init__(self, registry: str, *arguments: str) -> None:
        self.process = subprocess.Popen(
            [TESSERA, "--registry", registry, "revocations", "watch", *arguments],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=tessera_env(),
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def sequences(self, count: int, timeout: float = 10.0) -> list[int]:
        """The sequence numbers of the next ``count`` lines."""
        deadline = time.monotonic() + timeout
        return [
            int(
                self.lines.get(timeout=max(deadline - time.monotonic(), 0.01)).split()[
                    0
                ]
            )
            for _ in range(count)
        ]

    def stop(self) -> str:
        """End the command; what it said on stderr."""
        if self.process.poll() is None:
            self.process.terminate()
        _, errors = self.process.communicate(timeout=15)
        return errors


@pytest.fixture(scope="module")
def deployment(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """Two registries, the issuer (recording through the second), and two
    validators (one on each registry), each a process of its own."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    directory: Path = tmp_path_factory.mktemp("revocation-stream")
    with Deployment(
        directory,
        redis_url=redis_url,
        registries=2,
        validators=2,
        heartbeat_seconds=HEARTBEAT_SECONDS,
    ) as running:
        yield running


@pytest.fixture(scope="module")
def clients(deployment: Deployment) -> Iterator[tuple[Clients, Clients]]:
    """Clients of validator-1 (on registry-1) and validator-2 (on registry-2)."""
    first = Clients.connect(
        deployment.addresses["issuer"],
        deployment.addresses["registry-1"],
        deployment.addresses["validator-1"],
    )
    second = Clients.connect(
        deployment.addresses["issuer"],
        deployment.addresses["registry-2"],
        deployment.addresses["validator-2"],
    )
    first.create_frontdoor(FRONTDOOR)
    yield first, second
    first.close()
    second.close()


def _last_sequence(clients: Clients) -> int:
    page = clients.registry.ListRevocations(
        registry_pb2.ListRevocationsRequest(limit=1), timeout=10
    )
    return int(page.last_sequence)


def _enforced(deployment: Deployment, validator: str) -> float:
    samples = deployment.metric_samples(validator)
    return samples.get("tessera_revocation_enforcement_seconds_count", 0.0)


def test_watchers_of_both_registry_processes_hear_a_revocation_at_once(
    deployment: Deployment, clients: tuple[Clients, Clients]
) -> None:
    """A revocation the second registry commits reaches a watcher of the
    first through Redis, as fast as a watcher of the second."""
    first, _ = clients
    start = _last_sequence(first)
    watchers = [
        Watcher(deployment.addresses[name], "--from", str(start))
        for name in ("registry-1", "registry-2")
    ]
    warm_up, issued = first.issue(FRONTDOOR), first.issue(FRONTDOOR)
    # Once both print the first revocation, both follow the live stream.
    first.revoke(warm_up.record.fingerprint_sha256)
    for watcher in watchers:
        assert watcher.sequences(1, timeout=30) == [start + 1]

    revocation = first.revoke(issued.record.fingerprint_sha256)

    for watcher in watchers:
        assert watcher.sequences(1, timeout=3) == [revocation.sequence]
    for watcher in watchers:
        watcher.stop()


def test_two_validator_processes_refuse_a_revoked_certificate_within_five_seconds(
    deployment: Deployment, clients: tuple[Clients, Clients]
) -> None:
    """From RevokeCertificate returning, each validator process refuses the
    certificate within 5 s (the target is 1 s; ``make bench`` reports the
    figure), and each applied the entry from its registry's stream."""
    issued = clients[0].issue(FRONTDOOR)
    for side in clients:
        assert side.validate([issued.certificate], FRONTDOOR).valid
    applied = {
        name: _enforced(deployment, name) for name in ("validator-1", "validator-2")
    }

    clients[0].revoke(issued.record.fingerprint_sha256)
    returned = time.monotonic()

    for side in clients:
        assert eventually(
            lambda side=side: (
                list(side.validate([issued.certificate], FRONTDOOR).reasons)
                == [REVOKED]
            ),
            timeout=5,
        )
        assert time.monotonic() - returned <= 5
    for name, before in applied.items():
        assert eventually(
            lambda name=name, before=before: _enforced(deployment, name) > before,
            timeout=5,
        )


def test_watch_command_resumes_without_gaps_after_its_registry_is_killed(
    deployment: Deployment, clients: tuple[Clients, Clients]
) -> None:
    """The first registry dies (SIGKILL) while revocations go on through the
    second and comes back; the watcher that followed it prints every
    revocation once, in order, and so does the validator on it apply each."""
    first, second = clients
    start = _last_sequence(first)
    certificates = [first.issue(FRONTDOOR) for _ in range(9)]
    watcher = Watcher(
        deployment.addresses["registry-1"], "--from", str(start), "--count", "9"
    )

    for issued in certificates[:3]:
        first.revoke(issued.record.fingerprint_sha256)
    assert watcher.sequences(3, timeout=30) == [start + 1, start + 2, start + 3]
    deployment.kill("registry-1")
    for issued in certificates[3:6]:
        first.revoke(issued.record.fingerprint_sha256)
    deployment.restart("registry-1")
    for issued in certificates[6:]:
        first.revoke(issued.record.fingerprint_sha256)

    assert watcher.sequences(6, timeout=30) == list(range(start + 4, start + 10))
    assert watcher.process.wait(timeout=10) == 0
    assert "resuming after sequence" in watcher.stop()

    def validator_caught_up() -> bool:
        samples = deployment.metric_samples("validator-1")
        return samples.get("tessera_revocation_stream_sequence") == start + 9

    assert eventually(validator_caught_up, timeout=30)
    for issued in certificates:
        verdict = second.validate([issued.certificate], FRONTDOOR)
        assert list(verdict.reasons) == [REVOKED]


def test_watch_command_refuses_a_position_no_log_can_have() -> None:
    """A negative or overlarge --from is refused before anything is asked,
    with a sentence saying what to give."""
    for position, says in (
        ("-1", "is negative; give 0 for the whole log"),
        (str(2**63), "larger than any sequence the log can reach"),
        ("ten", "is not a sequence number"),
    ):
        result = run([TESSERA, "revocations", "watch", "--from", position])

        assert result.returncode == 2
        assert says in result.stderr
