"""Signing rate through the signer contract next to raw python-pkcs11.

For ECDSA P-256 and RSA-2048 keys generated in a SoftHSM2 token, the same
number of threads sign as fast as they can in three ways, interleaved round
by round so that load from elsewhere hits all three alike:

- raw, same work: python-pkcs11 with one session per thread doing what a
  certificate signature needs and nothing else: hash the data, sign the
  digest (SoftHSM2 has no hash-and-sign ECDSA mechanism), and for ECDSA
  encode r||s as DER;
- raw, token call only: the same sessions signing a digest prepared once,
  the ceiling no caller reaches;
- the signer: ``Pkcs11Signer.sign``, the contract the issuer uses, with its
  session pool and recovery.

The figure to watch is the signer's rate over the first (target at least
0.8); the second ratio shows the cost of hashing and DER as well. Issuance
throughput of the running suite with the intermediate's key in the token
is reported beside it, with software keys for comparison.

    python -m benchmarks.signers            # full size (make bench-signers)
    python -m benchmarks.signers --smoke    # seconds, for the test suite
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import CertificateSigningRequestBuilder, Name, NameAttribute
from cryptography.x509.oid import NameOID

REPOSITORY = Path(__file__).resolve().parent.parent
# The DigestInfo prefix of SHA-256 (RFC 8017 section 9.2), for raw RSA.
_SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


@dataclasses.dataclass(frozen=True)
class Size:
    """How long each measurement runs."""

    threads: int
    seconds: float
    rounds: int
    issuance_seconds: float


FULL = Size(threads=8, seconds=2.0, rounds=5, issuance_seconds=10.0)
SMOKE = Size(threads=4, seconds=0.3, rounds=1, issuance_seconds=1.0)


@dataclasses.dataclass(frozen=True)
class SigningFigures:
    """Signatures per second for one key kind."""

    key: str
    threads: int
    # python-pkcs11 doing the same work as the signer (hash, sign, DER).
    raw_per_second: float
    # python-pkcs11 signing a prepared digest: the token call alone.
    token_call_per_second: float
    signer_per_second: float
    signer_single_thread_per_second: float

    @property
    def ratio(self) -> float:
        return self.signer_per_second / self.raw_per_second

    @property
    def ratio_to_token_call(self) -> float:
        return self.signer_per_second / self.token_call_per_second


@dataclasses.dataclass(frozen=True)
class IssuanceFigures:
    """IssueCertificate calls per second through the running suite."""

    backend: str
    threads: int
    per_second: float


def create_token(directory: Path) -> tuple[str, str]:
    """A SoftHSM2 token through deploy/softhsm; its key-store URI and PIN."""
    made = subprocess.run(
        [str(REPOSITORY / "deploy" / "softhsm" / "create-token.sh"), str(directory)],
        capture_output=True,
        text=True,
        check=True,
    )
    os.environ["SOFTHSM2_CONF"] = str(directory / "softhsm2.conf")
    store = made.stdout.strip().splitlines()[-1]
    return store, (directory / "tessera.pin").read_text().strip()


def rate(
    threads: int, seconds: float, work: Callable[[int], Callable[[], object]]
) -> float:
    """Operations per second of ``threads`` threads running ``work(index)``
    in a loop for ``seconds``."""
    counts = [0] * threads
    errors: list[BaseException] = []
    start = threading.Barrier(threads + 1)
    stop = threading.Event()

    def loop(index: int) -> None:
        operation = work(index)
        start.wait()
        try:
            while not stop.is_set():
                operation()
                counts[index] += 1
        except BaseException as error:  # reported after the run
            errors.append(error)

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    start.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise RuntimeError(f"a benchmark thread failed: {errors[0]!r}") from errors[0]
    return sum(counts) / elapsed


def measure_signing(store: str, size: Size) -> list[SigningFigures]:
    """Raw python-pkcs11 and the signer contract, for each key kind."""
    from pkcs11 import Mechanism

    from signers.pkcs11 import _ecdsa_der

    data = os.urandom(600)  # about the size of a client certificate's TBS

    def ecdsa(sign: Callable[[bytes], bytes]) -> bytes:
        return _ecdsa_der(sign(hashlib.sha256(data).digest()), 32)

    def rsa_pkcs1(sign: Callable[[bytes], bytes]) -> bytes:
        return sign(_SHA256_DIGEST_INFO + hashlib.sha256(data).digest())

    prepared = hashlib.sha256(data).digest()
    return [
        _measure_key(store, "ec-p256", Mechanism.ECDSA, ecdsa, prepared, data, size),
        _measure_key(
            store,
            "rsa-2048",
            Mechanism.RSA_PKCS,
            rsa_pkcs1,
            _SHA256_DIGEST_INFO + prepared,
            data,
            size,
        ),
    ]


def _measure_key(
    store: str,
    spec: str,
    mechanism: Any,
    same_work: Callable[[Callable[[bytes], bytes]], bytes],
    prepared: bytes,
    data: bytes,
    size: Size,
) -> SigningFigures:
    from pkcs11 import Attribute, ObjectClass
    from pkcs11.types import SignMixin

    from signers.api import SignerContext
    from signers.pkcs11 import Pkcs11Signer, Pkcs11SignerPlugin
    from signers.pkcs11.uri import key_uri_in

    plugin = Pkcs11SignerPlugin(SignerContext(data_dir=Path("."), environ={}))
    label = f"bench-{spec}"
    signer = plugin.generate(key_uri_in(store, label), spec)  # type: ignore[arg-type]
    assert isinstance(signer, Pkcs11Signer)
    token = signer.pool.idle_sessions()[0].token
    sessions: list[Any] = []

    def raw_key() -> SignMixin:
        # The process is logged in through the signer; a session without a
        # PIN shares that login (PKCS#11 section 5.6).
        session = token.open()
        sessions.append(session)
        (key,) = session.get_objects(
            {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: label}
        )
        assert isinstance(key, SignMixin)
        return key

    def raw(index: int) -> Callable[[], object]:
        key = raw_key()
        sign = functools.partial(key.sign, mechanism=mechanism)
        return lambda: same_work(sign)

    def token_call(index: int) -> Callable[[], object]:
        key = raw_key()
        return lambda: key.sign(prepared, mechanism=mechanism)

    def through_signer(index: int) -> Callable[[], object]:
        return lambda: signer.sign(data, hashes.SHA256())

    raw_rates, token_rates, signer_rates = [], [], []
    for _ in range(size.rounds):
        raw_rates.append(rate(size.threads, size.seconds, raw))
        signer_rates.append(rate(size.threads, size.seconds, through_signer))
        token_rates.append(rate(size.threads, size.seconds, token_call))
    single = rate(1, size.seconds, through_signer)
    for session in sessions:
        session.close()
    signer.close()
    return SigningFigures(
        key=spec,
        threads=size.threads,
        raw_per_second=statistics.median(raw_rates),
        token_call_per_second=statistics.median(token_rates),
        signer_per_second=statistics.median(signer_rates),
        signer_single_thread_per_second=single,
    )


def measure_issuance(store: str, size: Size, data_dir: Path) -> list[IssuanceFigures]:
    """IssueCertificate throughput with the intermediate's key in the token,
    and with software keys."""
    from signers.pkcs11.uri import key_uri_in

    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        CertificateSigningRequestBuilder()
        .subject_name(Name([NameAttribute(NameOID.COMMON_NAME, "bench.example")]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    hsm = {"root_key_uri": key_uri_in(store, "bench-root"), "key_store": store}
    return [
        _measure_issuance(backend, issuer, csr, size, data_dir / backend)
        for backend, issuer in (("pkcs11", hsm), ("file", {}))
    ]


def _measure_issuance(
    backend: str, issuer: dict[str, str], csr: bytes, size: Size, data_dir: Path
) -> IssuanceFigures:
    from services.common.config import load_settings
    from services.common.rpc import open_channel
    from services.suite import start_suite
    from tessera.issuer.v1 import issuer_pb2, issuer_pb2_grpc

    settings = load_settings(
        data_dir=data_dir,
        metrics_listen="",
        issuer={"listen": "127.0.0.1:0", **issuer},
        registry={"listen": "127.0.0.1:0"},
        validator={"listen": "127.0.0.1:0"},
    )
    suite = start_suite(settings)
    channel = open_channel(suite.address("issuer"))
    stub = issuer_pb2_grpc.IssuerServiceStub(channel)
    try:
        stub.CreateFrontdoor(
            issuer_pb2.CreateFrontdoorRequest(name="bench"), timeout=30
        )
        request = issuer_pb2.IssueCertificateRequest(csr=csr, frontdoor="bench")

        def issue(index: int) -> Callable[[], object]:
            return lambda: stub.IssueCertificate(request, timeout=30)

        per_second = rate(size.threads, size.issuance_seconds, issue)
    finally:
        channel.close()
        suite.stop()
    return IssuanceFigures(backend, size.threads, per_second)


def report(
    signing: Sequence[SigningFigures], issuance: Sequence[IssuanceFigures], size: Size
) -> str:
    lines = [
        f"Tessera signer benchmark: {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, {size.threads} threads, "
        f"{size.seconds:g} s x {size.rounds} rounds (median)",
        "",
        f"{'key':<10} {'raw pkcs11/s':>13} {'signer/s':>9} {'ratio':>6} "
        f"{'token call/s':>13} {'ratio':>6} {'signer 1 thread/s':>18}",
    ]
    for figures in signing:
        lines.append(
            f"{figures.key:<10} {figures.raw_per_second:>13.0f} "
            f"{figures.signer_per_second:>9.0f} {figures.ratio:>6.2f} "
            f"{figures.token_call_per_second:>13.0f} "
            f"{figures.ratio_to_token_call:>6.2f} "
            f"{figures.signer_single_thread_per_second:>18.0f}"
        )
    lines += ["", f"{'issuance (intermediate key)':<28} {'certificates/s':>15}"]
    for issued in issuance:
        lines.append(f"{issued.backend + ' (EC P-256)':<28} {issued.per_second:>15.0f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="seconds, not minutes")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    options = parser.parse_args(argv)
    size = SMOKE if options.smoke else FULL

    from services.common.logging import configure_logging

    configure_logging("console", "warning")
    with tempfile.TemporaryDirectory(prefix="tessera-bench-") as scratch:
        directory = Path(scratch)
        # SOFTHSM2_CONF must name the token before the module is loaded.
        store, _ = create_token(directory / "softhsm")
        signing = measure_signing(store, size)
        issuance = measure_issuance(store, size, directory / "data")

    print(report(signing, issuance, size))
    if options.json:
        options.json.write_text(
            json.dumps(
                {
                    "size": dataclasses.asdict(size),
                    "signing": [
                        {
                            **dataclasses.asdict(f),
                            "ratio": f.ratio,
                            "ratio_to_token_call": f.ratio_to_token_call,
                        }
                        for f in signing
                    ],
                    "issuance": [dataclasses.asdict(f) for f in issuance],
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
