"""Revocation-to-enforcement latency across two validator processes.

    .venv/bin/python -m benchmarks.enforcement                  # full size
    .venv/bin/python -m benchmarks.enforcement --revocations 20 # a quick look

A registry, an issuer and two validators run as separate ``tessera serve``
processes on a Redis of the benchmark's own (or ``--redis-url``). The
benchmark issues certificates, checks both validators accept each, then
revokes them one at a time, each right after both validators accepted it
once more (so that a cached "valid" verdict must be dropped by the
revocation stream's event). For each revocation and each validator it
measures the time from RevokeCertificate returning, and from the
revocation's ``revocation_date``, to the first verdict that refuses the
certificate; both validators are polled at once, by a thread each.

Two further figures isolate the revocation stream: the latency an outside
subscriber of WatchRevocations sees (arrival minus ``revocation_date``),
and what the validators' ``tessera_revocation_enforcement_seconds``
histograms recorded when they applied the stream's entries.

The target is one second (the issue's "every validator instance refuses a
revoked certificate within one second").
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from benchmarks.deployment import Deployment
from services.common.rpc import open_channel
from services.registry.subscriber import RevocationSubscriber
from tessera.common.v1 import common_pb2
from tessera.issuer.v1 import issuer_pb2, issuer_pb2_grpc
from tessera.registry.v1 import registry_pb2
from tessera.validator.v1 import validator_pb2, validator_pb2_grpc

TARGET_SECONDS = 1.0
FULL_SIZE = 200
FRONTDOOR = "bench"
_POLL_DEADLINE = 30.0


@dataclasses.dataclass(frozen=True)
class Figures:
    """Summary of one series of latencies, in seconds."""

    count: int
    median: float
    p95: float
    maximum: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Figures:
        ordered = sorted(values)
        if not ordered:
            return cls(0, float("nan"), float("nan"), float("nan"))
        p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
        return cls(len(ordered), statistics.median(ordered), p95, ordered[-1])

    def line(self, label: str) -> str:
        return (
            f"  {label:<46} n={self.count:<4} median {_ms(self.median)}  "
            f"p95 {_ms(self.p95)}  max {_ms(self.maximum)}"
        )


@dataclasses.dataclass
class Report:
    """What one run measured."""

    revocations: int
    from_return: dict[str, list[float]]
    from_revocation_date: dict[str, list[float]]
    stream_delivery: list[float]
    histograms: dict[str, tuple[float, float]]

    def worst(self) -> float:
        """The largest refusal latency of any validator (from revocation_date)."""
        return max(
            (
                value
                for values in self.from_revocation_date.values()
                for value in values
            ),
            default=float("nan"),
        )

    def text(self) -> str:
        lines = [
            f"revocation-to-enforcement, {self.revocations} revocations, "
            f"2 validator processes (target <= {_ms(TARGET_SECONDS)})",
        ]
        everywhere = [v for values in self.from_return.values() for v in values]
        lines.append(
            Figures.of(everywhere).line("refused by both, from the RPC's return")
        )
        for name, values in sorted(self.from_return.items()):
            lines.append(
                Figures.of(values).line(f"refused by {name}, from the RPC's return")
            )
        for name, values in sorted(self.from_revocation_date.items()):
            lines.append(
                Figures.of(values).line(f"refused by {name}, from revocation_date")
            )
        lines.append(
            Figures.of(self.stream_delivery).line(
                "stream delivery to an outside subscriber"
            )
        )
        for name, (count, total) in sorted(self.histograms.items()):
            mean = total / count if count else float("nan")
            lines.append(
                f"  {name} applied {int(count)} stream entries, mean "
                f"{_ms(mean)} after revocation_date "
                "(tessera_revocation_enforcement_seconds)"
            )
        verdict = "meets" if self.worst() <= TARGET_SECONDS else "MISSES"
        lines.append(f"worst refusal {_ms(self.worst())}: {verdict} the 1 s target")
        return "\n".join(lines)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms"


class _Arrivals:
    """An outside subscriber's listener: when each entry arrived."""

    def __init__(self) -> None:
        self.latencies: dict[int, float] = {}
        self._lock = threading.Lock()

    def revocation(self, revocation: common_pb2.Revocation, live: bool) -> None:
        arrived = dt.datetime.now(dt.UTC)
        revoked = revocation.revocation_date.ToDatetime(tzinfo=dt.UTC)
        with self._lock:
            self.latencies[revocation.sequence] = (arrived - revoked).total_seconds()

    def heartbeat(self, heartbeat: registry_pb2.WatchHeartbeat) -> None:
        return None

    def stream_broken(self, error: grpc.RpcError | None, resume_from: int) -> None:
        return None


def _refused_after(validator: Any, certificate: bytes, started: float) -> float:
    """Poll one validator until it refuses; seconds since ``started``."""
    request = validator_pb2.ValidateCertificateRequest(
        chain=[certificate], frontdoor=FRONTDOOR
    )
    while True:
        verdict = validator.ValidateCertificate(request, timeout=10)
        now = time.monotonic()
        if not verdict.valid:
            return now - started
        if now - started > _POLL_DEADLINE:
            raise RuntimeError(
                f"a validator accepts a certificate revoked {_POLL_DEADLINE} s ago"
            )


def _poll_all(
    validators: dict[str, Any], certificate: bytes, started: float
) -> dict[str, float]:
    """Poll every validator at once, a thread each, until each refuses."""
    results: dict[str, float] = {}

    def poll(name: str) -> None:
        results[name] = _refused_after(validators[name], certificate, started)

    threads = [threading.Thread(target=poll, args=(name,)) for name in validators]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if len(results) != len(validators):
        raise RuntimeError("polling a validator failed; see the error above")
    return results


def measure(deployment: Deployment, revocations: int) -> Report:
    """Revoke ``revocations`` certificates one by one and time their refusal."""
    issuer_channel = open_channel(deployment.addresses["issuer"])
    issuer = issuer_pb2_grpc.IssuerServiceStub(issuer_channel)
    validator_names = sorted(
        name for name in deployment.addresses if name.startswith("validator-")
    )
    validator_channels = [
        open_channel(deployment.addresses[name]) for name in validator_names
    ]
    validators = {
        name: validator_pb2_grpc.ValidatorServiceStub(channel)
        for name, channel in zip(validator_names, validator_channels, strict=True)
    }
    registry_channel = open_channel(deployment.addresses["registry-1"])
    arrivals = _Arrivals()
    subscriber = RevocationSubscriber(registry_channel, arrivals)
    try:
        issuer.CreateFrontdoor(
            issuer_pb2.CreateFrontdoorRequest(name=FRONTDOOR), timeout=30
        )
        issued = [_issue(issuer) for _ in range(revocations)]
        for certificate in issued:
            for validator in validators.values():
                verdict = validator.ValidateCertificate(
                    validator_pb2.ValidateCertificateRequest(
                        chain=[certificate.certificate], frontdoor=FRONTDOOR
                    ),
                    timeout=10,
                )
                if not verdict.valid:
                    raise RuntimeError(f"a fresh certificate is refused: {verdict}")
        subscriber.start()
        if not subscriber.wait_caught_up(30):
            raise RuntimeError("the outside subscriber never caught up with the log")

        from_return: dict[str, list[float]] = {name: [] for name in validators}
        from_date: dict[str, list[float]] = {name: [] for name in validators}
        sequences = []
        for certificate in issued:
            # Both validators hold a fresh "valid" verdict for the certificate
            # in their verdict caches: only the stream's event can drop it
            # before the verdict's second is up.
            for validator in validators.values():
                validator.ValidateCertificate(
                    validator_pb2.ValidateCertificateRequest(
                        chain=[certificate.certificate], frontdoor=FRONTDOOR
                    ),
                    timeout=10,
                )
            revocation = issuer.RevokeCertificate(
                issuer_pb2.RevokeCertificateRequest(
                    fingerprint_sha256=certificate.record.fingerprint_sha256,
                    reason=common_pb2.REVOCATION_REASON_KEY_COMPROMISE,
                ),
                timeout=30,
            )
            returned = time.monotonic()
            returned_wall = time.time()
            sequences.append(revocation.sequence)
            revoked_at = revocation.revocation_date.ToDatetime(
                tzinfo=dt.UTC
            ).timestamp()
            results = _poll_all(validators, certificate.certificate, returned)
            for name, latency in results.items():
                from_return[name].append(latency)
                from_date[name].append(returned_wall - revoked_at + latency)

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(
            sequence in arrivals.latencies for sequence in sequences
        ):
            time.sleep(0.05)
        stream = [arrivals.latencies[s] for s in sequences if s in arrivals.latencies]
        histograms = {}
        for name in validators:
            samples = deployment.metric_samples(name)
            histograms[name] = (
                samples.get("tessera_revocation_enforcement_seconds_count", 0.0),
                samples.get("tessera_revocation_enforcement_seconds_sum", 0.0),
            )
        return Report(revocations, from_return, from_date, stream, histograms)
    finally:
        subscriber.stop()
        for channel in (issuer_channel, registry_channel, *validator_channels):
            channel.close()


def _issue(issuer: Any) -> Any:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench.example")])
        )
        .sign(key, hashes.SHA256())
    )
    return issuer.IssueCertificate(
        issuer_pb2.IssueCertificateRequest(
            csr=csr.public_bytes(serialization.Encoding.DER), frontdoor=FRONTDOOR
        ),
        timeout=30,
    )


def run(revocations: int, redis_url: str | None = None) -> Report:
    """Start a deployment in a scratch directory, measure, stop it."""
    with (
        tempfile.TemporaryDirectory(prefix="tessera-bench-") as scratch,
        Deployment(Path(scratch), redis_url=redis_url) as deployment,
    ):
        return measure(deployment, revocations)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--revocations",
        type=int,
        default=FULL_SIZE,
        help=f"how many certificates to revoke (default {FULL_SIZE})",
    )
    parser.add_argument(
        "--redis-url", help="a Redis to use instead of starting redis-server"
    )
    options = parser.parse_args(argv)
    if options.revocations < 1:
        parser.error("--revocations must be at least 1")
    report = run(options.revocations, options.redis_url)
    print(report.text())
    return 0 if report.worst() <= TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
