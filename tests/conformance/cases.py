"""Conformance cases written by others, read where they lie.

The folder is ``$TESSERA_CONFORMANCE_DIR``, else ``../shared/conformance``
beside the repository; its README describes the formats. Nothing from it is
copied into the repository. When neither folder exists the tests that need it
skip and say where they looked (CI sets the variable and runs strict, where a
skip fails).

Certificates presented by the peer go through the validator service's own
first step (``services.validator.service._parse``) before path validation,
as they do in production: what that step refuses is MALFORMED and never
reaches ``AnchorSet``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtensionOID

from services.validator.service import _parse

REPOSITORY = Path(__file__).resolve().parents[2]
ENVIRONMENT_VARIABLE = "TESSERA_CONFORMANCE_DIR"

SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
SKIPPED = "SKIPPED"


class Unreadable(Exception):
    """A case's certificate cannot be read the way the validator would."""


def conformance_dir() -> Path:
    """The conformance folder, or a skip naming the places looked at."""
    looked_at = []
    configured = os.environ.get(ENVIRONMENT_VARIABLE)
    if configured:
        looked_at.append(Path(configured))
    looked_at.append(REPOSITORY.parent / "shared" / "conformance")
    for folder in looked_at:
        if folder.is_dir():
            return folder

    places = " or ".join(str(folder) for folder in looked_at)
    pytest.skip(
        f"no conformance data: nothing at {places}; set "
        f"{ENVIRONMENT_VARIABLE} to the folder holding limbo/ and pkits/"
    )


# x509-limbo ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LimboCase:
    """One x509-limbo test case, with its certificates still in PEM."""

    id: str
    validation_kind: str
    features: tuple[str, ...]
    trusted_certs: tuple[str, ...]
    untrusted_intermediates: tuple[str, ...]
    peer_certificate: str
    validation_time: dt.datetime | None
    max_chain_depth: int | None
    has_crls: bool
    expected_result: str


def limbo_cases(folder: Path) -> list[LimboCase]:
    """Every case of ``limbo/limbo.json``, in file order."""
    document = json.loads((folder / "limbo" / "limbo.json").read_text())
    return [
        LimboCase(
            id=case["id"],
            validation_kind=case["validation_kind"],
            features=tuple(case["features"]),
            trusted_certs=tuple(case["trusted_certs"]),
            untrusted_intermediates=tuple(case["untrusted_intermediates"]),
            peer_certificate=case["peer_certificate"],
            validation_time=(
                dt.datetime.fromisoformat(case["validation_time"])
                if case["validation_time"]
                else None
            ),
            max_chain_depth=case["max_chain_depth"],
            has_crls=bool(case["crls"]),
            expected_result=case["expected_result"],
        )
        for case in document["testcases"]
    ]


def load_pem(pem: str) -> x509.Certificate:
    """A certificate from PEM, quietly even when its serial number is not
    positive (limbo carries such certificates on purpose)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        try:
            return x509.load_pem_x509_certificate(pem.encode())
        except ValueError as error:
            raise Unreadable(f"not a PEM certificate: {error}") from None


# NIST PKITS ---------------------------------------------------------------

PKITS_ANCHOR = "TrustAnchorRootCertificate.crt"
# Inside every PKITS certificate's validity (2010 to 2030).
PKITS_VALIDATION_TIME = dt.datetime(2022, 5, 1, tzinfo=dt.UTC)


@dataclasses.dataclass(frozen=True)
class PkitsCase:
    """One path of the PKITS manifest."""

    id: str
    name: str
    cert: Path
    other_certs: tuple[Path, ...]
    # RFC 5280 6.1.1 initial inputs (user-initial-policy-set and the
    # initial-*-inhibit flags) that differ from the defaults.
    has_initial_inputs: bool
    # None for a valid path, else the manifest's error class.
    error_class: str | None


def pkits_cases(folder: Path) -> list[PkitsCase]:
    """Every path of ``pkits/pkits.json``, in file order."""
    certs = folder / "pkits" / "certs"
    manifest = json.loads((folder / "pkits" / "pkits.json").read_text())
    return [
        PkitsCase(
            id=entry["id"],
            name=entry["name"],
            cert=certs / entry["cert"],
            other_certs=tuple(certs / name for name in entry.get("other_certs", [])),
            has_initial_inputs=bool(entry.get("params")),
            error_class=entry["error"]["class"] if "error" in entry else None,
        )
        for entry in manifest
    ]


def load_der_file(path: Path) -> x509.Certificate:
    """A trusted certificate from a DER file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        try:
            return x509.load_der_x509_certificate(path.read_bytes())
        except ValueError as error:
            raise Unreadable(f"{path.name} does not parse: {error}") from None


# Presented certificates ---------------------------------------------------


def presented(der_chain: Sequence[bytes]) -> list[x509.Certificate]:
    """Leaf and intermediates as the validator service's first step reads
    them; Unreadable where that step would answer MALFORMED."""
    certificates = []
    for position, der in enumerate(der_chain):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            certificate = _parse(der)
        if certificate is None:
            which = "the leaf" if position == 0 else f"intermediate {position}"
            raise Unreadable(
                f"{which} is malformed; the validator service refuses it "
                "before path validation"
            )
        certificates.append(certificate)
    return certificates


_EXTENSION_NAMES = {
    oid.dotted_string: name
    for name, oid in vars(ExtensionOID).items()
    if isinstance(oid, x509.ObjectIdentifier)
}


def short_reason(message: str) -> str:
    """A refusal message without the parts that differ from case to case
    (certificate reprs, dates, names) and with extensions named, so that
    refusals can be grouped."""
    message = re.sub(r"\s*\(encountered processing .*", "", message)
    message = message.replace("the certificate path is not valid: ", "")
    message = message.replace("validation failed: ", "")
    message = message.replace("candidates exhausted: ", "")
    message = re.sub(r"\d{4}-\d\d-\d\dT[\d:.]+\+00:00", "<date>", message)
    message = re.sub(r"\(issuer [^)]*\)", "(issuer <name>)", message)
    message = re.sub(
        r"\b\d+(?:\.\d+)+\b",
        lambda oid: _EXTENSION_NAMES.get(oid.group(), oid.group()),
        message,
    )
    return message.strip()
