"""The validator's hot path with and without the verdict cache.

    .venv/bin/python -m benchmarks.verdicts               # full size
    .venv/bin/python -m benchmarks.verdicts --calls 300   # a quick look

Runs the suite in this process on a Redis of its own, twice: with
``verdict_cache_seconds`` 0 (every call parses, validates the path and asks
the revocation cache) and 1 (the default). Each time it asks the validator
about one certificate ``--calls`` times in a row through gRPC and reports
the median and 95th percentile of the call's duration.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from benchmarks.deployment import start_redis
from services.common.config import load_settings
from services.common.logging import configure_logging
from services.common.rpc import open_channel
from services.suite import start_suite
from tessera.issuer.v1 import issuer_pb2, issuer_pb2_grpc
from tessera.validator.v1 import validator_pb2, validator_pb2_grpc

FULL_SIZE = 3000
FRONTDOOR = "bench"


@dataclasses.dataclass(frozen=True)
class Timing:
    """Durations of one series of calls, in seconds."""

    verdict_cache_seconds: float
    median: float
    p95: float
    calls_per_second: float

    def line(self) -> str:
        return (
            f"  verdict_cache_seconds={self.verdict_cache_seconds:g}: median "
            f"{self.median * 1e3:.2f} ms, p95 {self.p95 * 1e3:.2f} ms, "
            f"{self.calls_per_second:.0f} calls/s one after another"
        )


def _csr() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench.example")])
    request = x509.CertificateSigningRequestBuilder().subject_name(name)
    return request.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def time_calls(directory: Path, redis_url: str, ttl: float, calls: int) -> Timing:
    """Time ``calls`` validations of one certificate with a verdict cache TTL."""
    settings = load_settings(
        data_dir=directory,
        redis_url=redis_url,
        metrics_listen="",
        issuer={"listen": "127.0.0.1:0"},
        registry={"listen": "127.0.0.1:0"},
        validator={"listen": "127.0.0.1:0", "verdict_cache_seconds": ttl},
    )
    suite = start_suite(settings)
    channels = [
        open_channel(suite.address("issuer")),
        open_channel(suite.address("validator")),
    ]
    try:
        issuer = issuer_pb2_grpc.IssuerServiceStub(channels[0])
        validator = validator_pb2_grpc.ValidatorServiceStub(channels[1])
        issuer.CreateFrontdoor(
            issuer_pb2.CreateFrontdoorRequest(name=FRONTDOOR), timeout=30
        )
        issued = issuer.IssueCertificate(
            issuer_pb2.IssueCertificateRequest(csr=_csr(), frontdoor=FRONTDOOR),
            timeout=30,
        )
        request = validator_pb2.ValidateCertificateRequest(
            chain=[issued.certificate], frontdoor=FRONTDOOR
        )
        # The cache sync's first pass sets the markers; then warm up.
        time.sleep(2 * settings.registry.cache_sync_interval_seconds)
        for _ in range(min(calls, 300)):
            validator.ValidateCertificate(request, timeout=10)

        durations = []
        began = time.perf_counter()
        for _ in range(calls):
            started = time.perf_counter()
            verdict = validator.ValidateCertificate(request, timeout=10)
            durations.append(time.perf_counter() - started)
            if not verdict.valid:
                raise RuntimeError(f"the certificate is refused: {verdict.message}")
        elapsed = time.perf_counter() - began
    finally:
        for channel in channels:
            channel.close()
        suite.stop()
    durations.sort()
    return Timing(
        verdict_cache_seconds=ttl,
        median=statistics.median(durations),
        p95=durations[min(len(durations) - 1, round(0.95 * (len(durations) - 1)))],
        calls_per_second=calls / elapsed,
    )


def run(calls: int, redis_url: str | None = None) -> list[Timing]:
    """Both series, each on a suite of its own."""
    with tempfile.TemporaryDirectory(prefix="tessera-bench-") as scratch:
        server = None
        if redis_url is None:
            server, redis_url = start_redis(Path(scratch) / "redis")
        try:
            return [
                time_calls(Path(scratch) / f"data-{ttl:g}", redis_url, ttl, calls)
                for ttl in (0.0, 1.0)
            ]
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=10)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=FULL_SIZE)
    parser.add_argument(
        "--redis-url", help="a Redis to use instead of starting redis-server"
    )
    options = parser.parse_args(argv)
    configure_logging("console", "warning")
    if options.calls < 1:
        parser.error("--calls must be at least 1")
    print(f"ValidateCertificate, one certificate, {options.calls} calls in a row")
    for timing in run(options.calls, options.redis_url):
        print(timing.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
