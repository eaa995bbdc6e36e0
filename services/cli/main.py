"""``tessera``: run the suite and work with frontdoors and certificates.

The CLI speaks PEM to people and DER to the services. Client keys are made
here, on the machine that will use them, and never sent anywhere.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import ipaddress
import json
import os
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import grpc
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from google.protobuf import field_mask_pb2, json_format
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from services.cli import backup as backup_cli
from services.cli import inventory as cli_inventory
from services.cli import nginx, operations, uploads, usage
from services.common import identifiers
from services.common.audit import verify_chain
from services.common.config import (
    ConfigError,
    IssuerConfig,
    Settings,
    load_settings,
    unknown_environment,
)
from services.common.database import Database, is_sqlite, migrate
from services.common.errors import TesseraError
from services.common.logging import configure_logging
from services.common.rpc import open_channel, remote_error
from services.issuer.distribution import pem
from signers.api import SignerContext, SignerError, open_signer, redact_uri
from tessera.common.v1 import common_pb2
from tessera.issuer.v1 import issuer_pb2, issuer_pb2_grpc
from tessera.registry.v1 import registry_pb2, registry_pb2_grpc
from tessera.validator.v1 import validator_pb2, validator_pb2_grpc

if TYPE_CHECKING:
    from services.issuer.authority import Hierarchy

_REASONS = {
    name.removeprefix("REVOCATION_REASON_").lower().replace("_", "-"): (
        cast(common_pb2.RevocationReason, value)
    )
    for name, value in common_pb2.RevocationReason.items()
    if value != common_pb2.REVOCATION_REASON_REMOVE_FROM_CRL
}
_SAN_PREFIXES: dict[str, Callable[[str], x509.GeneralName]] = {
    "dns": x509.DNSName,
    "uri": x509.UniformResourceIdentifier,
    "email": x509.RFC822Name,
}
_KEY_TYPES = ("ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096", "ed25519")
_DEADLINE_SECONDS = 30.0
_LISTEN_VARIABLES = {
    "issuer": "TESSERA_ISSUER__LISTEN",
    "registry": "TESSERA_REGISTRY__LISTEN",
    "validator": "TESSERA_VALIDATOR__LISTEN",
}
_KEY_TYPE_FLAGS = {
    "rsa": common_pb2.KEY_TYPE_RSA,
    "ec-p256": common_pb2.KEY_TYPE_EC_P256,
    "ec-p384": common_pb2.KEY_TYPE_EC_P384,
    "ed25519": common_pb2.KEY_TYPE_ED25519,
}


class CommandError(Exception):
    """A command cannot go on; the message says what to do."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tessera`` command.

    Exit codes: 0 success; 1 a negative answer (a refused certificate, a
    broken audit chain); 2 an error, with a message on standard error.
    """
    parser = _parser()
    options = parser.parse_args(argv)
    try:
        return int(options.run(options) or 0)
    except BrokenPipeError:
        # The reader of our output (head, less) went away; that is not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (CommandError, ConfigError, SignerError, cli_inventory.UsageError) as error:
        print(f"tessera: {error}", file=sys.stderr)
        return 2
    except TesseraError as error:
        print(f"tessera: {error.message}", file=sys.stderr)
        return 2
    except grpc.RpcError as error:
        print(f"tessera: {_rpc_failure(error, options)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


# Settings and connections -----------------------------------------------


def _settings(options: argparse.Namespace) -> Settings:
    return load_settings(options.config, data_dir=options.data_dir)


def _actor() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()} (cli)"


def _address(options: argparse.Namespace, service: str) -> str:
    explicit = getattr(options, f"{service}_address", None)
    if explicit:
        return str(explicit)
    settings = _settings(options)
    return {
        "issuer": settings.issuer.listen,
        "registry": settings.registry.listen,
        "validator": settings.validator.listen,
    }[service]


def _issuer(options: argparse.Namespace) -> Any:
    options.called = ("issuer", _address(options, "issuer"))
    return issuer_pb2_grpc.IssuerServiceStub(open_channel(options.called[1], _actor()))


def _registry(options: argparse.Namespace) -> Any:
    options.called = ("registry", _address(options, "registry"))
    return registry_pb2_grpc.RegistryServiceStub(
        open_channel(options.called[1], _actor())
    )


def _validator(options: argparse.Namespace) -> Any:
    options.called = ("validator", _address(options, "validator"))
    return validator_pb2_grpc.ValidatorServiceStub(
        open_channel(options.called[1], _actor())
    )


def _rpc_failure(error: grpc.RpcError, options: argparse.Namespace) -> str:
    service, address = getattr(options, "called", ("service", "?"))
    # gRPC's own wording when no connection could be made; any other
    # UNAVAILABLE is the service's answer (for example "the registry cannot
    # be reached"), which is worth passing on as it is.
    details = error.details() or ""
    if error.code() == grpc.StatusCode.UNAVAILABLE and (
        "failed to connect" in details or "Connection refused" in details or not details
    ):
        return (
            f"cannot reach the {service} at {address}; is 'tessera serve' running? "
            f"(give another address with --{service} or {_LISTEN_VARIABLES[service]})"
        )
    return remote_error(error, service).message


# Files --------------------------------------------------------------------


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise CommandError(f"cannot read {path}: {error.strerror}") from None


def _write_private(path: Path, content: bytes, force: bool) -> None:
    """Write a file readable by its owner only; refuse to overwrite unless forced."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        descriptor = os.open(path, flags, 0o600)
    except FileExistsError:
        raise CommandError(f"{path} exists; remove it or pass --force") from None
    except OSError as error:
        raise CommandError(f"cannot write {path}: {error.strerror}") from None
    with os.fdopen(descriptor, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(content)


def _write(path: Path | None, content: bytes) -> None:
    if path is None or str(path) == "-":
        sys.stdout.write(content.decode())
        return
    try:
        path.write_bytes(content)
    except OSError as error:
        raise CommandError(f"cannot write {path}: {error.strerror}") from None


def _replace(path: Path, content: bytes) -> None:
    """Write ``path`` through a temporary file renamed over it."""
    temporary = path.with_name(f".{path.name}.tmp")
    _write(temporary, content)
    try:
        os.replace(temporary, path)
    except OSError as error:
        raise CommandError(f"cannot write {path}: {error.strerror}") from None


def _pem(der: bytes) -> bytes:
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)


def _load_certificates(data: bytes, path: Path) -> list[x509.Certificate]:
    if b"-----BEGIN" in data:
        try:
            return x509.load_pem_x509_certificates(data)
        except ValueError:
            raise CommandError(f"{path} holds no readable PEM certificate") from None
    try:
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise CommandError(f"{path} is neither a PEM nor a DER certificate") from None


def _load_csr_der(path: Path) -> bytes:
    data = _read(path)
    try:
        if b"-----BEGIN" in data:
            csr = x509.load_pem_x509_csr(data)
        else:
            csr = x509.load_der_x509_csr(data)
    except ValueError:
        raise CommandError(f"{path} is not a PEM or DER certificate request") from None
    return csr.public_bytes(serialization.Encoding.DER)


# serve ------------------------------------------------------------------


def _serve(options: argparse.Namespace) -> int:
    from services.suite import SERVICES, serve_metrics_once, start_suite

    settings = _settings(options)
    configure_logging(settings.log_format, settings.log_level)
    for variable in unknown_environment(os.environ):
        print(
            f"tessera: warning: {variable} is not a Tessera setting and is ignored",
            file=sys.stderr,
        )
    services = SERVICES if options.service == "all" else (options.service,)
    metrics = serve_metrics_once(settings)
    suite = start_suite(settings, services)

    print(
        "Tessera is running in development mode: plaintext gRPC without "
        "authentication. Keep the listeners on loopback."
    )
    print(f"  data directory  {settings.data_dir}")
    for name in services:
        if name in suite.servers:
            print(f"  {name:<15} {suite.address(name)}")
    if suite.publication:
        print(f"  publication     http://{suite.publication} (CRLs, OCSP, CAs)")
    if "issuer" in services:
        print(f"  public URLs     {settings.issuer.public_base_url} (in certificates)")
    if metrics:
        print(f"  metrics         http://{metrics}/metrics")
    if "registry" in services:
        print(f"  database        {_shown_url(settings.registry_database_url)}")
    cache = _shown_url(settings.redis_url) if settings.redis_url else "in-process"
    print(f"  cache           {cache}")
    print("Press Ctrl-C to stop.", flush=True)

    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    stopped.wait()
    suite.stop()
    return 0


def _shown_url(url: str) -> str:
    """A database or Redis URL as it may be printed: without its password."""
    return (
        str(make_url(url).render_as_string(hide_password=True)) if "://" in url else url
    )


# frontdoor --------------------------------------------------------------


def _settings_from_flags(
    options: argparse.Namespace,
) -> tuple[common_pb2.FrontdoorSettings, list[str]]:
    settings = common_pb2.FrontdoorSettings()
    paths = []
    if options.default_validity_days is not None:
        settings.issuance.default_validity_days = options.default_validity_days
        paths.append("issuance.default_validity_days")
    if options.max_validity_days is not None:
        settings.issuance.max_validity_days = options.max_validity_days
        paths.append("issuance.max_validity_days")
    if options.key_types is not None:
        settings.issuance.allowed_key_types.extend(
            _KEY_TYPE_FLAGS[name] for name in options.key_types
        )
        paths.append("issuance.allowed_key_types")
    if options.min_rsa_bits is not None:
        settings.issuance.min_rsa_bits = options.min_rsa_bits
        paths.append("issuance.min_rsa_bits")
    if options.on_revocation_unknown is not None:
        settings.revocation.on_unknown = (
            common_pb2.REVOCATION_FAILURE_POLICY_FAIL_OPEN
            if options.on_revocation_unknown == "fail-open"
            else common_pb2.REVOCATION_FAILURE_POLICY_FAIL_CLOSED
        )
        paths.append("revocation.on_unknown")
    operations.apply_alert_days(options, settings, paths)
    return settings, paths


def _frontdoor_create(options: argparse.Namespace) -> int:
    settings, _ = _settings_from_flags(options)
    frontdoor = _issuer(options).CreateFrontdoor(
        issuer_pb2.CreateFrontdoorRequest(name=options.name, settings=settings),
        timeout=_DEADLINE_SECONDS,
    )
    print(f"created frontdoor {frontdoor.name}")
    _print_frontdoor(frontdoor)
    return 0


def _frontdoor_update(options: argparse.Namespace) -> int:
    settings, paths = _settings_from_flags(options)
    if not paths:
        raise CommandError("name at least one setting to change")
    frontdoor = _issuer(options).UpdateFrontdoor(
        issuer_pb2.UpdateFrontdoorRequest(
            name=options.name,
            settings=settings,
            update_mask=field_mask_pb2.FieldMask(paths=paths),
        ),
        timeout=_DEADLINE_SECONDS,
    )
    print(f"updated frontdoor {frontdoor.name} ({', '.join(paths)})")
    _print_frontdoor(frontdoor)
    return 0


def _frontdoor_show(options: argparse.Namespace) -> int:
    frontdoor = _issuer(options).GetFrontdoor(
        issuer_pb2.GetFrontdoorRequest(name=options.name), timeout=_DEADLINE_SECONDS
    )
    _print_frontdoor(frontdoor)
    if options.intermediate_out:
        _write(options.intermediate_out, _pem(frontdoor.intermediates[0].certificate))
    return 0


def _frontdoor_list(options: argparse.Namespace) -> int:
    response = _issuer(options).ListFrontdoors(
        issuer_pb2.ListFrontdoorsRequest(), timeout=_DEADLINE_SECONDS
    )
    if not response.frontdoors:
        print("no frontdoors yet; create one with 'tessera frontdoor create NAME'")
    for frontdoor in response.frontdoors:
        key_ids = ", ".join(ca.key_id for ca in frontdoor.intermediates)
        print(f"{frontdoor.name:<24} intermediate {key_ids}")
    return 0


def _print_frontdoor(frontdoor: common_pb2.Frontdoor) -> None:
    issuance = frontdoor.effective_settings.issuance
    policy = common_pb2.RevocationFailurePolicy.Name(
        frontdoor.effective_settings.revocation.on_unknown
    )
    key_types = ", ".join(
        common_pb2.KeyType.Name(kind).removeprefix("KEY_TYPE_")
        for kind in issuance.allowed_key_types
    )
    print(f"  name                   {frontdoor.name}")
    for ca in frontdoor.intermediates:
        status = common_pb2.CertificateStatus.Name(ca.status).removeprefix(
            "CERTIFICATE_STATUS_"
        )
        subject = x509.load_der_x509_certificate(ca.certificate).subject
        print(f"  intermediate           {ca.key_id} ({status.lower()})")
        print(f"    subject              {subject.rfc4514_string()}")
        print(f"    valid until          {ca.not_valid_after.ToJsonString()}")
    print(f"  default validity       {issuance.default_validity_days} days")
    print(f"  max validity           {issuance.max_validity_days} days")
    print(f"  key types              {key_types} (RSA >= {issuance.min_rsa_bits} bits)")
    print(
        "  revocation unknown     "
        f"{policy.removeprefix('REVOCATION_FAILURE_POLICY_').lower().replace('_', '-')}"
    )
    print(f"  expiry alerts          {operations.describe_alert_days(frontdoor)}")


# export -----------------------------------------------------------------


def _export_nginx(options: argparse.Namespace) -> int:
    bundle = _current_trust_bundle(options)
    directory: Path = options.out.resolve()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CommandError(f"cannot create {directory}: {error.strerror}") from None
    ca_path = directory / "ca.pem"
    crl_path = directory / "crl.pem"
    conf_path = directory / f"tessera-{options.frontdoor}.conf"
    try:
        snippet = nginx.server_snippet(
            options.frontdoor, ca_path, crl_path, list(bundle.intermediate_subjects)
        )
    except ValueError as error:
        raise CommandError(str(error)) from None
    # Each file is replaced whole, so an nginx reload during a scheduled
    # re-export never reads half a bundle.
    _replace(
        ca_path, b"".join(pem("CERTIFICATE", der) for der in bundle.ca_certificates)
    )
    _replace(crl_path, b"".join(pem("X509 CRL", der) for der in bundle.crls))
    _replace(conf_path, snippet.encode())
    print(f"wrote {ca_path}, {crl_path} and {conf_path}")
    return 0


def _current_trust_bundle(options: argparse.Namespace) -> issuer_pb2.TrustBundle:
    """The frontdoor's trust bundle once each CRL in it lists every
    revocation of its CA made so far, waiting up to ``--wait`` seconds: a
    CRL is rebuilt seconds after a revocation, and an export made in that
    gap would hand nginx a CRL without it."""
    issuer = _issuer(options)
    request = issuer_pb2.GetTrustBundleRequest(frontdoor=options.frontdoor)
    deadline = time.monotonic() + options.wait
    told = False
    while True:
        bundle = issuer.GetTrustBundle(request, timeout=_DEADLINE_SECONDS)
        lacking = _crls_lacking_revocations(options, bundle)
        if not lacking:
            return bundle
        if time.monotonic() >= deadline:
            break
        if not told:
            print(
                f"waiting up to {options.wait} s for the CRL of CA "
                f"{', '.join(lacking)} to include its newest revocations",
                file=sys.stderr,
            )
            told = True
        time.sleep(1)
    if options.wait == 0:
        print(
            f"tessera: warning: the CRL of CA {', '.join(lacking)} does not list "
            "every revocation made yet; export again in a few seconds",
            file=sys.stderr,
        )
        return bundle
    raise CommandError(
        f"the CRL of CA {', '.join(lacking)} still lacks revocations after "
        f"{options.wait} s; is the issuer's CRL job running (see its log)? "
        "Use --wait 0 to write the bundles as they are"
    )


def _crls_lacking_revocations(
    options: argparse.Namespace, bundle: issuer_pb2.TrustBundle
) -> list[str]:
    """Key ids of the bundle's CAs with revocations newer than their CRL."""
    registry = _registry(options)
    lacking = []
    for der, covered in zip(
        bundle.ca_certificates, bundle.crl_revocation_sequences, strict=True
    ):
        key_id = identifiers.subject_key_id(x509.load_der_x509_certificate(der))
        newer = registry.ListIssuerRevocations(
            registry_pb2.ListIssuerRevocationsRequest(
                issuer_key_id=key_id, after_sequence=covered, limit=1
            ),
            timeout=_DEADLINE_SECONDS,
        )
        if newer.revoked:
            lacking.append(key_id)
    return lacking


# ca ---------------------------------------------------------------------


def _ca_root(options: argparse.Namespace) -> int:
    root = _issuer(options).GetPlatformRoot(
        issuer_pb2.GetPlatformRootRequest(), timeout=_DEADLINE_SECONDS
    )
    _write(options.out, _pem(root.certificate))
    if options.out and str(options.out) != "-":
        print(f"wrote the platform root ({root.key_id}) to {options.out}")
    return 0


def _offline_hierarchy(
    settings: Settings, suite_closers: list[Callable[[], None]]
) -> Hierarchy:
    """The issuer's CA hierarchy over its database, without a running issuer."""
    from services.common.audit import AuditLog
    from services.common.clock import SystemClock
    from services.issuer.authority import Hierarchy

    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    migrate(settings.audit_url, "common")
    migrate(settings.issuer_database_url, "issuer")
    audit_database = Database(settings.audit_url)
    suite_closers.append(audit_database.dispose)
    database = Database(settings.issuer_database_url)
    suite_closers.append(database.dispose)
    context = SignerContext(
        data_dir=settings.data_dir,
        environ=dict(os.environ),
        pkcs11_module_path=settings.issuer.pkcs11_module_path,
    )
    clock = SystemClock()
    hierarchy = Hierarchy(
        database,
        settings.issuer,
        context,
        AuditLog(audit_database, "cli", clock),
        clock,
    )
    suite_closers.append(hierarchy.close)
    return hierarchy


def _ca_init(options: argparse.Namespace) -> int:
    settings = _settings(options)
    updates: dict[str, Any] = {}
    if options.frontdoor is None:
        updates["root_key_uri"] = options.key
        if options.key_type:
            updates["root_key"] = options.key_type
    elif options.key_type:
        updates["intermediate_key"] = options.key_type
    try:
        issuer = IssuerConfig.model_validate(
            {**settings.issuer.model_dump(), **updates}
        )
    except ValidationError as error:
        problems = "; ".join(problem["msg"] for problem in error.errors())
        raise CommandError(f"--key cannot be used: {problems}") from None
    settings = settings.model_copy(update={"issuer": issuer})
    closers: list[Callable[[], None]] = []
    try:
        hierarchy = _offline_hierarchy(settings, closers)
        if options.frontdoor is not None:
            signer = hierarchy.prepare_intermediate(options.frontdoor, options.key)
            key = signer.describe()
            print(
                f"reserved the intermediate of frontdoor {options.frontdoor} with the "
                f"{key.algorithm} {key.size} key at {key.uri}"
            )
            print(
                f"  'tessera frontdoor create {options.frontdoor}' certifies it with "
                "the platform root"
            )
            return 0
        existing = [
            row
            for row in hierarchy.authority_rows()
            if row.role == "root" and row.status == "active"
        ]
        if existing:
            raise CommandError(
                f"the platform root already exists (key id {existing[0].key_id}, key "
                f"at {redact_uri(existing[0].signer_uri)}); a second root is not "
                "created"
            )
        root = hierarchy.ensure_root(_actor())
        key = root.signer.describe()
        print(f"created the platform root {root.key_id}")
        print(f"  subject      {root.certificate.subject.rfc4514_string()}")
        print(f"  key          {key.algorithm} {key.size} ({key.backend}) at {key.uri}")
        print(f"  valid until  {root.certificate.not_valid_after_utc.isoformat()}")
        if options.out:
            _write(options.out, _pem(root.der))
        return 0
    finally:
        for close in reversed(closers):
            close()


def _ca_list(options: argparse.Namespace) -> int:
    settings = _settings(options)
    closers: list[Callable[[], None]] = []
    try:
        hierarchy = _offline_hierarchy(settings, closers)
        rows = hierarchy.authority_rows()
        if not rows:
            print("no CAs yet; 'tessera serve' or 'tessera ca init' creates the root")
            return 0
        context = SignerContext(
            data_dir=settings.data_dir,
            environ=dict(os.environ),
            pkcs11_module_path=settings.issuer.pkcs11_module_path,
        )
        unreachable = 0
        print(f"{'ROLE':<13} {'FRONTDOOR':<16} {'STATUS':<8} {'KEY ID':<41} SIGNER")
        for row in rows:
            uri = redact_uri(row.signer_uri)
            print(
                f"{row.role:<13} {row.frontdoor or '-':<16} {row.status:<8} "
                f"{row.key_id or '-':<41} {uri}"
            )
            if not options.check:
                continue
            try:
                signer = open_signer(row.signer_uri, context)
            except SignerError as error:
                unreachable += 1
                print(f"  {'':<12} key unreachable: {error}")
                continue
            key = signer.describe()
            signer.close()
            print(f"  {'':<12} {key.backend} {key.algorithm} {key.size}: reachable")
        return 1 if unreachable else 0
    finally:
        for close in reversed(closers):
            close()


# key --------------------------------------------------------------------


def _key_new(options: argparse.Namespace) -> int:
    try:
        subject = (
            x509.Name.from_rfc4514_string(options.subject)
            if options.subject
            else x509.Name([])
        )
    except ValueError as error:
        raise CommandError(f"--subject is not an RFC 4514 name: {error}") from None
    names = [_parse_san(text) for text in options.san]
    if len(subject) == 0 and not names:
        raise CommandError("give a --subject (for example CN=payments-api) or a --san")

    key = _generate_key(options.type)
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(names), critical=len(subject) == 0
        )
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    csr = builder.sign(key, algorithm)

    _write_private(
        options.key,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        options.force,
    )
    _write(options.csr, csr.public_bytes(serialization.Encoding.PEM))
    print(f"wrote private key {options.key} (mode 0600; it never leaves this machine)")
    print(f"wrote certificate request {options.csr}")
    return 0


def _generate_key(kind: str) -> Any:
    if kind == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ec-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(65537, int(kind.split("-")[1]))


def _parse_san(text: str) -> x509.GeneralName:
    prefix, _, value = text.partition(":")
    prefix = prefix.lower()
    if not value:
        raise CommandError(
            f"--san {text!r}: write dns:NAME, uri:URI, email:ADDRESS or ip:ADDRESS"
        )
    if prefix == "ip":
        try:
            return x509.IPAddress(ipaddress.ip_address(value))
        except ValueError:
            raise CommandError(
                f"--san {text!r}: {value!r} is not an IP address"
            ) from None
    if prefix not in _SAN_PREFIXES:
        raise CommandError(
            f"--san {text!r}: write dns:NAME, uri:URI, email:ADDRESS or ip:ADDRESS"
        )
    return _SAN_PREFIXES[prefix](value)


# cert -------------------------------------------------------------------


def _cert_request(options: argparse.Namespace) -> int:
    response = _issuer(options).IssueCertificate(
        issuer_pb2.IssueCertificateRequest(
            csr=_load_csr_der(options.csr),
            frontdoor=options.frontdoor,
            name=options.name or "",
            validity_days=options.days or 0,
            description=options.description or "",
            environment=options.environment or "",
            owner=options.owner or "",
            tags=options.tag or [],
            services=options.service or [],
        ),
        timeout=_DEADLINE_SECONDS,
    )
    _write(options.out, _pem(response.certificate))
    if options.chain:
        # The intermediates a client presents; the root stays with relying parties.
        _write(options.chain, b"".join(_pem(der) for der in response.chain[:-1]))
    record = response.record
    print(f"issued a certificate for frontdoor {record.frontdoor}")
    print(f"  serial       {record.serial_number}")
    print(f"  subject      {record.subject or '(empty)'}")
    print(f"  fingerprint  {record.fingerprint_sha256}")
    print(f"  valid until  {record.not_valid_after.ToJsonString()}")
    print(
        f"  written to   {options.out}"
        + (f" (chain: {options.chain})" if options.chain else "")
    )
    return 0


def _cert_validate(options: argparse.Namespace) -> int:
    certificates = _load_certificates(_read(options.certificate), options.certificate)
    if options.chain:
        certificates += _load_certificates(_read(options.chain), options.chain)
    verdict = _validator(options).ValidateCertificate(
        validator_pb2.ValidateCertificateRequest(
            chain=[c.public_bytes(serialization.Encoding.DER) for c in certificates],
            frontdoor=options.frontdoor,
        ),
        timeout=_DEADLINE_SECONDS,
    )
    reasons = ", ".join(
        common_pb2.ValidationReason.Name(reason).removeprefix("VALIDATION_REASON_")
        for reason in verdict.reasons
    )
    print(f"{'VALID' if verdict.valid else 'REFUSED'} ({reasons}): {verdict.message}")
    if verdict.HasField("identity"):
        print(f"  subject      {verdict.identity.subject or '(empty)'}")
        for san in verdict.identity.subject_alt_names:
            kind = common_pb2.SubjectAltName.Type.Name(san.type).removeprefix("TYPE_")
            print(f"  san          {kind.lower()}:{san.value}")
        print(f"  serial       {verdict.identity.serial_number}")
    return 0 if verdict.valid else 1


def _cert_revoke(options: argparse.Namespace) -> int:
    request = issuer_pb2.RevokeCertificateRequest(reason=_REASONS[options.reason])
    if options.fingerprint:
        request.fingerprint_sha256 = options.fingerprint
    elif options.serial and options.frontdoor:
        request.serial.frontdoor = options.frontdoor
        request.serial.serial_number = options.serial
    elif options.certificate:
        certificate = _load_certificates(
            _read(options.certificate), options.certificate
        )[0]
        request.fingerprint_sha256 = identifiers.fingerprint(certificate)
    else:
        raise CommandError(
            "name the certificate: --fingerprint FP, --serial S with --frontdoor F, or "
            "a certificate file"
        )
    revocation = _issuer(options).RevokeCertificate(request, timeout=_DEADLINE_SECONDS)
    print(
        f"revoked certificate {revocation.serial_number} of frontdoor "
        f"{revocation.frontdoor} ({options.reason}); revocation log entry "
        f"{revocation.sequence}"
    )
    return 0


def _on_registry(
    command: Callable[[argparse.Namespace, Any], int],
) -> Callable[[argparse.Namespace], int]:
    """Run an inventory command (services/cli/inventory.py) on the registry,
    its certificate named by a fingerprint's start found there first."""

    def run(options: argparse.Namespace) -> int:
        registry = _registry(options)
        named = getattr(options, "fingerprint", None)
        if isinstance(named, FingerprintStart):
            options.fingerprint = _whole_fingerprint(registry, named)
        return command(options, registry)

    return run


class FingerprintStart(str):
    """The first hex digits of a fingerprint (as `tessera cert list` shows
    16), to be found in the registry."""

    __slots__ = ()


def _whole_fingerprint(registry: Any, start: FingerprintStart) -> str:
    found = registry.ListCertificates(
        registry_pb2.ListCertificatesRequest(fingerprint_prefix=start, page_size=2),
        timeout=_DEADLINE_SECONDS,
    ).certificates
    if not found:
        raise CommandError(
            f"no certificate in the registry has a fingerprint starting with {start}"
        )
    if len(found) > 1:
        raise CommandError(
            f"{start} starts the fingerprints of several certificates "
            f"({found[0].fingerprint_sha256[:20]}..., "
            f"{found[1].fingerprint_sha256[:20]}...); give more digits"
        )
    return str(found[0].fingerprint_sha256)


def _cert_show(options: argparse.Namespace) -> int:
    request = registry_pb2.GetCertificateRequest()
    if options.fingerprint:
        request.fingerprint_sha256 = options.fingerprint
    elif options.serial and options.frontdoor:
        request.frontdoor_serial.frontdoor = options.frontdoor
        request.frontdoor_serial.serial_number = options.serial
    elif options.certificate:
        certificate = _load_certificates(
            _read(options.certificate), options.certificate
        )[0]
        request.fingerprint_sha256 = identifiers.fingerprint(certificate)
    else:
        raise CommandError(
            "name the certificate: --fingerprint FP, --serial S with --frontdoor F, or "
            "a certificate file"
        )
    record = _registry(options).GetCertificate(request, timeout=_DEADLINE_SECONDS)
    shown = json_format.MessageToDict(record, preserving_proto_field_name=True)
    shown.pop("certificate", None)
    print(json.dumps(shown, indent=2))
    return 0


def _cert_upload(options: argparse.Namespace) -> int:
    try:
        return uploads.run(options, _registry(options))
    except ValueError as error:
        raise CommandError(str(error)) from None


# audit ------------------------------------------------------------------


def _audit_verify(options: argparse.Namespace) -> int:
    settings = _settings(options)
    shown = make_url(settings.audit_url).render_as_string(hide_password=True)
    # Verifying must never create what it checks: a database that is not
    # there, or has no audit tables, is an error, not an intact empty chain.
    if (
        is_sqlite(settings.audit_url)
        and not Path(make_url(settings.audit_url).database or "").is_file()
    ):
        raise CommandError(
            f"there is no Tessera database at {shown}; point --data-dir (or "
            "TESSERA_DATA_DIR, or audit_database_url) at the suite's data"
        )
    database = Database(settings.audit_url)
    try:
        if not sa.inspect(database.read_engine).has_table("audit_head"):
            raise CommandError(
                f"the database at {shown} holds no audit log; point --data-dir "
                "(or TESSERA_DATA_DIR, or audit_database_url) at the suite's data"
            )
        result = verify_chain(database)
    finally:
        database.dispose()
    if result.intact:
        print(
            f"audit chain intact: {result.entries_checked} entries; head hash "
            f"{result.head_hash}"
        )
        return 0
    print(
        f"audit chain BROKEN at entry {result.first_broken_sequence}: {result.problem} "
        f"({result.entries_checked} entries before it verified)"
    )
    return 1


# revocations ------------------------------------------------------------

_MAX_SEQUENCE = 2**63 - 1


def _sequence(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a sequence number; give a whole number such as 0 or 42"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(
            f"{value} is negative; give 0 for the whole log or the last sequence seen"
        )
    if value > _MAX_SEQUENCE:
        raise argparse.ArgumentTypeError(
            f"{value} is larger than any sequence the log can reach ({_MAX_SEQUENCE})"
        )
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number above 0")
    return value


class _RevocationPrinter:
    """Prints each revocation on one line; says on stderr when it resumes."""

    def __init__(self, as_json: bool, count: int | None, done: threading.Event):
        self._as_json = as_json
        self._left = count
        self._done = done

    def revocation(self, revocation: common_pb2.Revocation, live: bool) -> None:
        if self._done.is_set():
            return
        reason = common_pb2.RevocationReason.Name(revocation.reason)
        reason = reason.removeprefix("REVOCATION_REASON_").lower().replace("_", "-")
        revoked_at = revocation.revocation_date.ToDatetime(tzinfo=dt.UTC).isoformat()
        if self._as_json:
            shown = json_format.MessageToDict(
                revocation, preserving_proto_field_name=True
            )
            print(json.dumps(shown, sort_keys=True), flush=True)
        else:
            print(
                f"{revocation.sequence} {revoked_at} {revocation.frontdoor or '-'} "
                f"{revocation.issuer_key_id} {revocation.serial_number} {reason}",
                flush=True,
            )
        if self._left is not None:
            self._left -= 1
            if self._left <= 0:
                self._done.set()

    def heartbeat(self, heartbeat: registry_pb2.WatchHeartbeat) -> None:
        return None

    def stream_broken(self, error: grpc.RpcError | None, resume_from: int) -> None:
        if self._done.is_set():
            return
        why = "the registry ended it"
        if error is not None:
            code = getattr(error, "code", lambda: None)()
            details = getattr(error, "details", lambda: "")() or ""
            why = f"{code.name if code else 'error'}: {details}"
        print(
            f"tessera: the revocation stream broke ({why}); resuming after sequence "
            f"{resume_from}",
            file=sys.stderr,
            flush=True,
        )


def _revocations_watch(options: argparse.Namespace) -> int:
    from services.registry.subscriber import RevocationSubscriber

    address = _address(options, "registry")
    options.called = ("registry", address)
    done = threading.Event()
    printer = _RevocationPrinter(options.json, options.count, done)
    channel = open_channel(address, _actor())
    subscriber = RevocationSubscriber(channel, printer, options.from_sequence)
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    subscriber.start()
    done.wait()
    subscriber.stop()
    channel.close()
    return 0


# The parser -------------------------------------------------------------


def _global_options(suppress: bool) -> argparse.ArgumentParser:
    """Options every command takes, before or after its name."""
    default = argparse.SUPPRESS if suppress else None
    options = argparse.ArgumentParser(add_help=False)
    group = options.add_argument_group("where Tessera is")
    group.add_argument(
        "--config", type=Path, default=default, help="TOML configuration file"
    )
    group.add_argument(
        "--data-dir",
        type=Path,
        default=default,
        help="the suite's data directory (default: TESSERA_DATA_DIR or "
        "~/.local/share/tessera)",
    )
    group.add_argument(
        "--issuer",
        dest="issuer_address",
        default=default,
        metavar="HOST:PORT",
        help="the issuer's address",
    )
    group.add_argument(
        "--registry",
        dest="registry_address",
        default=default,
        metavar="HOST:PORT",
        help="the registry's address",
    )
    group.add_argument(
        "--validator",
        dest="validator_address",
        default=default,
        metavar="HOST:PORT",
        help="the validator's address",
    )
    return options


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tessera",
        description="Tessera: client certificates for mutual TLS.",
        epilog="Exit codes: 0 success; 1 a negative answer (a refused certificate, "
        "a broken audit chain); 2 an error.",
        parents=[_global_options(suppress=False)],
    )
    # Subcommands repeat the global options so they may follow the command
    # name too; their defaults are suppressed so they never undo a value
    # given before it.
    anywhere = _global_options(suppress=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", parents=[anywhere], help="run the services")
    serve.add_argument(
        "service",
        nargs="?",
        default="all",
        choices=("all", "issuer", "registry", "validator", "publication"),
        help="which service to run (default: all three in one process); "
        "'publication' runs only the issuer's public HTTP listener (CRLs, OCSP, "
        "CA certificates, bundles) beside an issuer, and needs Redis",
    )
    serve.set_defaults(run=_serve)

    frontdoor = _group(commands, "frontdoor", "create and inspect frontdoors")
    create = frontdoor.add_parser(
        "create", parents=[anywhere], help="create a frontdoor and its CA"
    )
    create.add_argument("name")
    _settings_flags(create)
    create.set_defaults(run=_frontdoor_create)
    update = frontdoor.add_parser(
        "update", parents=[anywhere], help="change a frontdoor's settings"
    )
    update.add_argument("name")
    _settings_flags(update)
    update.set_defaults(run=_frontdoor_update)
    show = frontdoor.add_parser("show", parents=[anywhere], help="show a frontdoor")
    show.add_argument("name")
    show.add_argument(
        "--intermediate-out", type=Path, help="write its intermediate certificate (PEM)"
    )
    show.set_defaults(run=_frontdoor_show)
    listing = frontdoor.add_parser("list", parents=[anywhere], help="list frontdoors")
    listing.set_defaults(run=_frontdoor_list)

    ca = _group(commands, "ca", "the platform's CA certificates")
    root = ca.add_parser(
        "root", parents=[anywhere], help="write the platform root certificate (PEM)"
    )
    root.add_argument("--out", type=Path, help="file to write (default: stdout)")
    root.set_defaults(run=_ca_root)
    init = ca.add_parser(
        "init",
        parents=[anywhere],
        help="create the platform root, or reserve a frontdoor's intermediate, with "
        "its key at a signer URI (an HSM key: pkcs11:token=...;object=...)",
        description="Works on the issuer's database directly; run it before "
        "'tessera serve' for the root. A key the URI names but the backend does "
        "not hold yet is generated there (inside the token for pkcs11:).",
    )
    init.add_argument(
        "--key",
        required=True,
        help="signer URI of the key, e.g. 'pkcs11:token=tessera;object=root-ca"
        "?pin-source=/etc/tessera/hsm.pin' or 'file:/secure/root.pem'",
    )
    init.add_argument(
        "--frontdoor",
        help="reserve this frontdoor's intermediate instead of creating the root",
    )
    init.add_argument(
        "--key-type",
        choices=_KEY_TYPES[:-1],
        help="kind of key to generate when none exists (default: issuer.root_key "
        "or issuer.intermediate_key)",
    )
    init.add_argument("--out", type=Path, help="write the root certificate (PEM)")
    init.set_defaults(run=_ca_init)
    listing_ca = ca.add_parser(
        "list", parents=[anywhere], help="show every CA and the signer of its key"
    )
    listing_ca.add_argument(
        "--check", action="store_true", help="open each key and report its kind"
    )
    listing_ca.set_defaults(run=_ca_list)

    key = _group(commands, "key", "client keys, made on this machine")
    new = key.add_parser(
        "new", parents=[anywhere], help="make a private key and a CSR for it"
    )
    new.add_argument(
        "--key", type=Path, required=True, help="private key file to write"
    )
    new.add_argument("--csr", type=Path, required=True, help="CSR file to write (PEM)")
    new.add_argument("--subject", help="RFC 4514 subject, for example CN=payments-api")
    new.add_argument(
        "--san",
        action="append",
        default=[],
        help="subject alternative name: dns:NAME, uri:URI, email:ADDR or ip:ADDR",
    )
    new.add_argument("--type", choices=_KEY_TYPES, default="ec-p256")
    new.add_argument("--force", action="store_true", help="overwrite an existing key")
    new.set_defaults(run=_key_new)

    cert = _group(commands, "cert", "request, validate, revoke and list certificates")
    request = cert.add_parser(
        "request", parents=[anywhere], help="get a certificate for a CSR"
    )
    request.add_argument("--frontdoor", required=True)
    request.add_argument(
        "--csr", type=Path, required=True, help="CSR file (PEM or DER)"
    )
    request.add_argument(
        "--out", type=Path, required=True, help="certificate file (PEM)"
    )
    request.add_argument(
        "--chain", type=Path, help="intermediate certificate file (PEM)"
    )
    request.add_argument("--name", help="descriptive name recorded in the registry")
    request.add_argument(
        "--days", type=_whole_number(1, _UINT32), help="validity in days"
    )
    request.add_argument("--description", help="what the certificate is for")
    request.add_argument("--environment", help="environment, for example prod")
    request.add_argument("--owner", help="who answers for the certificate")
    request.add_argument("--tag", action="append", help="a tag (repeatable)")
    request.add_argument(
        "--service",
        action="append",
        help="a service using it in --environment (repeatable)",
    )
    request.set_defaults(run=_cert_request)

    validate = cert.add_parser(
        "validate", parents=[anywhere], help="ask the validator about a certificate"
    )
    validate.add_argument("certificate", type=Path, help="PEM or DER; leaf first")
    validate.add_argument("--frontdoor", required=True)
    validate.add_argument(
        "--chain", type=Path, help="intermediates the client presents"
    )
    validate.set_defaults(run=_cert_validate)

    revoke = cert.add_parser("revoke", parents=[anywhere], help="revoke a certificate")
    revoke.add_argument(
        "certificate", type=Path, nargs="?", help="the certificate file"
    )
    _certificate_selector_options(revoke)
    revoke.add_argument(
        "--reason",
        choices=sorted(_REASONS),
        default="unspecified",
        help="RFC 5280 reason; key-compromise also bars the key from new "
        "certificates (default: unspecified)",
    )
    revoke.set_defaults(run=_cert_revoke)

    _inventory_parsers(cert, anywhere)

    show_cert = cert.add_parser(
        "show", parents=[anywhere], help="show one recorded certificate"
    )
    show_cert.add_argument(
        "certificate", type=Path, nargs="?", help="the certificate file"
    )
    _certificate_selector_options(show_cert)
    show_cert.set_defaults(run=_cert_show)
    usage.add_unused_command(cert, [anywhere], _registry)

    upload = cert.add_parser(
        "upload",
        parents=[anywhere],
        help="upload certificates of your own PKI and print the lint report",
    )
    uploads.configure(upload)
    upload.set_defaults(run=_cert_upload)

    revocations = _group(commands, "revocations", "follow the revocation log")
    watch = revocations.add_parser(
        "watch",
        parents=[anywhere],
        help="print each revocation, one line each, as the registry logs it",
        description="Print the revocation log from a sequence on, then every new "
        "revocation as it commits: SEQUENCE REVOCATION_DATE FRONTDOOR "
        "ISSUER_KEY_ID SERIAL REASON. After a break it resumes where it stopped.",
    )
    watch.add_argument(
        "--from",
        dest="from_sequence",
        type=_sequence,
        default=0,
        metavar="N",
        help="start after log entry N (default 0: the whole log)",
    )
    watch.add_argument(
        "--count", type=_positive, metavar="N", help="stop after N revocations"
    )
    watch.add_argument("--json", action="store_true", help="one JSON object a line")
    watch.set_defaults(run=_revocations_watch)

    export = _group(commands, "export", "configuration for relying parties")
    nginx_export = export.add_parser(
        "nginx",
        parents=[anywhere],
        help="write a frontdoor's CA and CRL bundles and an nginx snippet",
        description="Write ca.pem (the platform root and the frontdoor's "
        "intermediates), crl.pem (their CRLs) and tessera-FRONTDOOR.conf (nginx "
        "directives for a server block: client certificates required, checked "
        "against the bundles and the frontdoor's intermediates) into DIR.",
    )
    nginx_export.add_argument("--frontdoor", required=True)
    nginx_export.add_argument("--out", type=Path, required=True, metavar="DIR")
    nginx_export.add_argument(
        "--wait",
        type=_whole_number(0, 3600),
        default=60,
        metavar="SECONDS",
        help="wait this long for CRLs that lack a revocation already made "
        "(default 60; 0 writes them as they are, with a warning)",
    )
    nginx_export.set_defaults(run=_export_nginx)

    audit = _group(commands, "audit", "the hash-chained audit log")
    verify = audit.add_parser(
        "verify",
        parents=[anywhere],
        help="verify the chain; report the first broken link",
    )
    verify.set_defaults(run=_audit_verify)

    backup_cli.add_parsers(commands, revocations, anywhere, _group, _address)
    _operations_parsers(commands, anywhere)
    return parser


def _operations_parsers(commands: Any, anywhere: argparse.ArgumentParser) -> None:
    """trust list and remove, alerts list and dead-letters."""
    trust = _group(commands, "trust", "frontdoors' trust stores")
    trust_list = trust.add_parser(
        "list",
        parents=[anywhere],
        help="a frontdoor's trust anchors: kind, status, fingerprint, subject",
    )
    trust_list.add_argument("--frontdoor", required=True)
    trust_list.add_argument("--json", action="store_true", help="JSON output")
    trust_list.set_defaults(run=_on_registry(operations.trust_list))
    trust_remove = trust.add_parser(
        "remove",
        parents=[anywhere],
        help="take an uploaded CA or a pinned certificate out of a trust store",
        description="The validator stops accepting what the anchor vouched for "
        "once it sees the change. Issued intermediates are revoked instead "
        "('tessera cert revoke').",
    )
    trust_remove.add_argument("fingerprint", help="SHA-256 fingerprint, hex")
    trust_remove.add_argument("--frontdoor", required=True)
    trust_remove.add_argument("--json", action="store_true", help="JSON output")
    trust_remove.set_defaults(run=_on_registry(operations.trust_remove))

    alerts = _group(commands, "alerts", "expiry notifications and dead letters")
    listing = alerts.add_parser(
        "list",
        parents=[anywhere],
        help="expiry notifications, newest first, with their delivery state",
    )
    listing.add_argument("--frontdoor", help="only this frontdoor's notifications")
    dead = alerts.add_parser(
        "dead-letters",
        parents=[anywhere],
        help="webhook deliveries that failed every attempt, newest first",
    )
    for parser in (listing, dead):
        parser.add_argument(
            "--limit",
            type=_whole_number(1, operations.MAX_PAGE),
            default=100,
            help=f"show at most this many, 1 to {operations.MAX_PAGE} (default 100)",
        )
        parser.add_argument(
            "--before-id",
            type=_whole_number(1, 2**63 - 1),
            metavar="ID",
            help="only older entries than ID (continue a previous listing)",
        )
        parser.add_argument("--json", action="store_true", help="JSON output")
    listing.set_defaults(run=_on_registry(operations.alerts_list))
    dead.set_defaults(run=_on_registry(operations.alerts_dead_letters))


def _inventory_parsers(cert: Any, anywhere: argparse.ArgumentParser) -> None:
    """cert list, history, edit, map, impact and delete."""
    listing = cert.add_parser(
        "list", parents=[anywhere], help="list and search recorded certificates"
    )
    listing.add_argument("--frontdoor", help="only this frontdoor's certificates")
    listing.add_argument(
        "--status",
        choices=sorted(cli_inventory.STATUSES),
        help="only certificates in this status",
    )
    listing.add_argument("--kind", choices=sorted(cli_inventory.KINDS))
    listing.add_argument("--name", help="exact descriptive name")
    listing.add_argument("--environment")
    listing.add_argument("--owner")
    listing.add_argument("--tag")
    listing.add_argument(
        "--search", help="a subject or SAN value (exact, any case), e.g. a DNS name"
    )
    listing.add_argument("--fingerprint")
    listing.add_argument("--serial", help="serial number (with --issuer-key-id)")
    listing.add_argument("--issuer-key-id")
    listing.add_argument("--service", help="mapped to this service")
    listing.add_argument(
        "--usage",
        choices=sorted(cli_inventory.USAGES),
        help="only certificates a validator has (used) or has never (never-used) "
        "reported accepting",
    )
    listing.add_argument(
        "--origin",
        choices=sorted(cli_inventory.ORIGINS),
        help="only certificates Tessera issued, or only uploaded ones",
    )
    listing.add_argument(
        "--expires-within",
        type=_whole_number(0, 36500),
        metavar="DAYS",
        help="notAfter between now and DAYS days from now",
    )
    listing.add_argument(
        "--expires-after", type=cli_inventory.time_argument, metavar="TIME"
    )
    listing.add_argument(
        "--expires-before", type=cli_inventory.time_argument, metavar="TIME"
    )
    listing.add_argument("--sort", choices=sorted(cli_inventory.ORDERS))
    listing.add_argument("--desc", dest="descending", action="store_true")
    listing.add_argument(
        "--count", action="store_true", help="also count every match (slower)"
    )
    listing.add_argument(
        "--page-size",
        type=_whole_number(1, 1000),
        default=100,
        help="certificates a page, 1 to 1000 (default 100)",
    )
    listing.add_argument("--page-token", help="continue a previous listing")
    listing.add_argument("--all", action="store_true", help="follow every page")
    listing.add_argument("--json", action="store_true", help="JSON output")
    listing.set_defaults(run=_on_registry(cli_inventory.cert_list))

    history = cert.add_parser(
        "history", parents=[anywhere], help="a certificate's history"
    )
    history.add_argument(
        "fingerprint", type=_fingerprint_or_file, metavar="FINGERPRINT|FILE"
    )
    history.add_argument("--json", action="store_true", help="JSON output")
    history.set_defaults(run=_on_registry(cli_inventory.cert_history))

    edit = cert.add_parser(
        "edit", parents=[anywhere], help="change a certificate's metadata"
    )
    edit.add_argument(
        "fingerprint", type=_fingerprint_or_file, metavar="FINGERPRINT|FILE"
    )
    edit.add_argument("--name")
    edit.add_argument("--description")
    edit.add_argument("--environment")
    edit.add_argument("--owner")
    edit.add_argument(
        "--tag", action="append", help="the new tags (repeatable; replace the old)"
    )
    edit.add_argument("--clear-tags", action="store_true")
    edit.set_defaults(run=_on_registry(cli_inventory.cert_edit))

    mapping = cert.add_parser(
        "map", parents=[anywhere], help="map a certificate to services"
    )
    mapping.add_argument(
        "fingerprint", type=_fingerprint_or_file, metavar="FINGERPRINT|FILE"
    )
    mapping.add_argument(
        "--add", action="append", type=cli_inventory.mapping_argument, metavar="S@ENV"
    )
    mapping.add_argument(
        "--remove",
        action="append",
        type=cli_inventory.mapping_argument,
        metavar="S@ENV",
    )
    mapping.add_argument(
        "--set",
        nargs="*",
        type=cli_inventory.mapping_argument,
        metavar="S@ENV",
        help="replace every mapping",
    )
    mapping.add_argument("--clear", action="store_true", help="remove every mapping")
    mapping.add_argument("--json", action="store_true", help="JSON output")
    mapping.set_defaults(run=_on_registry(cli_inventory.cert_map))

    impact = cert.add_parser(
        "impact", parents=[anywhere], help="what revoking a certificate would break"
    )
    impact.add_argument(
        "fingerprint", type=_fingerprint_or_file, metavar="FINGERPRINT|FILE"
    )
    impact.add_argument("--page-size", type=_whole_number(1, 1000), default=100)
    impact.add_argument("--all", action="store_true", help="follow every page")
    impact.add_argument("--json", action="store_true", help="JSON output")
    impact.set_defaults(run=_on_registry(cli_inventory.cert_impact))

    delete = cert.add_parser(
        "delete",
        parents=[anywhere],
        help="delete a revoked or expired certificate (its history stays)",
    )
    delete.add_argument(
        "fingerprint", type=_fingerprint_or_file, metavar="FINGERPRINT|FILE"
    )
    delete.add_argument("--reason")
    delete.set_defaults(run=_on_registry(cli_inventory.cert_delete))


def _fingerprint_or_file(text: str) -> str:
    """An argparse type: a certificate's SHA-256 fingerprint, given as such,
    as its first 8 or more hex digits (found in the registry when the
    command runs), or as the certificate's file (PEM or DER; the first
    certificate)."""
    try:
        return identifiers.parse_fingerprint(text)
    except ValueError:
        pass
    path = Path(text)
    if not path.is_file():
        if _FINGERPRINT_START.fullmatch(text):
            return FingerprintStart(text.lower())
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a SHA-256 fingerprint (64 hex digits, or the "
            "first 8 or more as `tessera cert list` shows them) nor a "
            "certificate file"
        )
    try:
        certificates = _load_certificates(_read(path), path)
    except CommandError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return identifiers.fingerprint(certificates[0])


def _certificate_selector_options(parser: argparse.ArgumentParser) -> None:
    """The ways to name a recorded certificate besides its file."""
    parser.add_argument("--fingerprint", help="SHA-256 of the certificate's DER, hex")
    parser.add_argument(
        "--serial", help="serial number, hex as 'tessera cert list' shows it"
    )
    parser.add_argument("--frontdoor", help="the frontdoor the serial belongs to")


# The largest value of the protobuf uint32 fields these flags fill.
_UINT32 = 2**32 - 1
_FINGERPRINT_START = re.compile(r"[0-9a-fA-F]{8,63}")


def _whole_number(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to ``high``."""

    def number(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a whole number"
            ) from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside {low} to {high}")
        return value

    return number


def _group(commands: Any, name: str, help_text: str) -> Any:
    group = commands.add_parser(name, help=help_text)
    return group.add_subparsers(dest=f"{name}_command", required=True, metavar="ACTION")


def _settings_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--default-validity-days",
        type=_whole_number(1, _UINT32),
        help="validity when a request names none",
    )
    parser.add_argument(
        "--max-validity-days",
        type=_whole_number(1, _UINT32),
        help="longest validity a request may ask for",
    )
    parser.add_argument(
        "--key-types",
        type=_key_type_list,
        metavar="TYPES",
        help="comma-separated client key types accepted: "
        + ", ".join(_KEY_TYPE_FLAGS)
        + " (within the platform's key_policy)",
    )
    parser.add_argument(
        "--min-rsa-bits",
        type=_whole_number(1, _UINT32),
        help="smallest RSA key accepted",
    )
    parser.add_argument(
        "--on-revocation-unknown",
        choices=("fail-closed", "fail-open"),
        default=None,
        help="what the validator does when revocation status cannot be established",
    )
    parser.add_argument(
        "--alert-days",
        type=operations.alert_days_argument,
        metavar="DAYS",
        help="expiry warning windows, comma-separated days before the chain "
        "expires, for example 30,14,7,1; 'default' for the platform's",
    )


def _key_type_list(text: str) -> list[str]:
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in _KEY_TYPE_FLAGS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"key types are a comma-separated list of {', '.join(_KEY_TYPE_FLAGS)}"
        )
    return names


if __name__ == "__main__":
    sys.exit(main())
