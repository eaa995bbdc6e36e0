"""Helpers the tests share: settings for a suite on ephemeral ports, CSRs,
clients for the three services, outside tools, and waiting for processes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.config import Settings, load_settings
from services.common.rpc import open_channel
from tessera.issuer.v1 import issuer_pb2, issuer_pb2_grpc
from tessera.registry.v1 import registry_pb2, registry_pb2_grpc
from tessera.validator.v1 import validator_pb2, validator_pb2_grpc

REPOSITORY = Path(__file__).resolve().parent.parent
TESSERA = str(Path(sys.executable).parent / "tessera")


class ManualClock:
    """A clock the test moves by hand."""

    def __init__(self, now: dt.datetime | None = None) -> None:
        self._now = now or dt.datetime.now(dt.UTC)

    def now(self) -> dt.datetime:
        return self._now

    def advance(self, delta: dt.timedelta) -> None:
        self._now += delta


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def suite_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for a suite under ``data_dir`` with every listener on port 0."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "metrics_listen": "",
        "issuer": {"listen": "127.0.0.1:0", "publication_listen": "127.0.0.1:0"},
        "registry": {"listen": "127.0.0.1:0", "cache_sync_interval_seconds": 0.2},
        "validator": {"listen": "127.0.0.1:0", "trust_store_ttl_seconds": 0},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = {**values[key], **value}
        else:
            values[key] = value
    return load_settings(**values)


def make_csr(
    subject: str | None = "CN=client.example",
    sans: Sequence[x509.GeneralName] = (),
    key: Any = None,
    critical_san: bool = False,
    extensions: Iterable[tuple[x509.ExtensionType, bool]] = (),
) -> bytes:
    """A DER CSR signed by ``key`` (a new P-256 key by default)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name.from_rfc4514_string(subject) if subject else x509.Name([])
    builder = x509.CertificateSigningRequestBuilder().subject_name(name)
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(list(sans)), critical=critical_san
        )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    algorithm = hashes.SHA256() if not _is_edwards(key) else None
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.DER)


def _is_edwards(key: Any) -> bool:
    from cryptography.hazmat.primitives.asymmetric import ed448, ed25519

    return isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey)


def common_name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


@dataclasses.dataclass
class Clients:
    """Stubs for the three services of one running suite."""

    issuer: Any
    registry: Any
    validator: Any
    channels: list[grpc.Channel]

    @classmethod
    def connect(cls, issuer: str, registry: str, validator: str) -> Clients:
        channels = [open_channel(address) for address in (issuer, registry, validator)]
        return cls(
            issuer=issuer_pb2_grpc.IssuerServiceStub(channels[0]),
            registry=registry_pb2_grpc.RegistryServiceStub(channels[1]),
            validator=validator_pb2_grpc.ValidatorServiceStub(channels[2]),
            channels=channels,
        )

    def close(self) -> None:
        for channel in self.channels:
            channel.close()

    def create_frontdoor(self, name: str, **settings: Any) -> Any:
        return self.issuer.CreateFrontdoor(
            issuer_pb2.CreateFrontdoorRequest(name=name, **settings), timeout=30
        )

    def issue(self, frontdoor: str, csr: bytes | None = None, **fields: Any) -> Any:
        return self.issuer.IssueCertificate(
            issuer_pb2.IssueCertificateRequest(
                csr=csr if csr is not None else make_csr(),
                frontdoor=frontdoor,
                **fields,
            ),
            timeout=30,
        )

    def validate(self, chain: Sequence[bytes], frontdoor: str) -> Any:
        return self.validator.ValidateCertificate(
            validator_pb2.ValidateCertificateRequest(
                chain=list(chain), frontdoor=frontdoor
            ),
            timeout=30,
        )

    def revoke(self, fingerprint: str, reason: int = 1) -> Any:
        return self.issuer.RevokeCertificate(
            issuer_pb2.RevokeCertificateRequest(
                fingerprint_sha256=fingerprint, reason=reason
            ),
            timeout=30,
        )

    def snapshot(self) -> tuple[Any, ...]:
        """Everything the registry holds, to compare before and after."""
        frontdoors = self.registry.ListFrontdoors(registry_pb2.ListFrontdoorsRequest())
        certificates = self.registry.ListCertificates(
            registry_pb2.ListCertificatesRequest(page_size=1000)
        )
        revocations = self.registry.ListRevocations(
            registry_pb2.ListRevocationsRequest()
        )
        return (
            frontdoors.SerializeToString(deterministic=True),
            certificates.SerializeToString(deterministic=True),
            revocations.SerializeToString(deterministic=True),
        )


def rpc_error(call: Callable[[], Any]) -> grpc.RpcError:
    """The error a call fails with; fails the test when it succeeds."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def require_tool(name: str) -> str:
    """The path of an outside tool, or a skip saying how to get it."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed; scripts/test.sh installs it")
    return path


def run(args: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing text output."""
    return subprocess.run(
        list(args), capture_output=True, text=True, timeout=120, check=False, **kwargs
    )


def wait_serving(address: str, timeout: float = 30.0) -> None:
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


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Whether ``check`` becomes true within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def tessera_env(**values: str) -> dict[str, str]:
    """The environment for a ``tessera`` subprocess.

    The issuer's public HTTP listener takes a free port unless ``values``
    choose one, so that processes of parallel tests never collide on it.
    """
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("TESSERA_")
    }
    environment["TESSERA_ISSUER__PUBLICATION_LISTEN"] = "127.0.0.1:0"
    environment.update(values)
    return environment


@dataclasses.dataclass(frozen=True)
class SoftHsmToken:
    """A SoftHSM2 token of one test, made by deploy/softhsm/create-token.sh."""

    directory: Path
    label: str
    module_path: str

    @property
    def pin_file(self) -> Path:
        return self.directory / f"{self.label}.pin"

    @property
    def pin(self) -> str:
        return self.pin_file.read_text().strip()

    @property
    def store_uri(self) -> str:
        """The token as a key store: new keys are generated in it."""
        return f"pkcs11:token={self.label}?pin-source={self.pin_file}"

    def key_uri(self, object_label: str) -> str:
        """The URI of the key ``object_label`` in this token."""
        return (
            f"pkcs11:token={self.label};object={object_label}"
            f"?pin-source={self.pin_file}"
        )


def create_softhsm_token(directory: Path, label: str = "tessera") -> SoftHsmToken:
    """A new token in ``directory`` through the operators' own script."""
    require_tool("softhsm2-util")
    made = run(
        [
            str(REPOSITORY / "deploy" / "softhsm" / "create-token.sh"),
            str(directory),
            label,
        ]
    )
    assert made.returncode == 0, made.stderr
    from signers.pkcs11.module import find_module_path

    return SoftHsmToken(directory, label, find_module_path(None, None, {}))
