"""Writing OCSP requests and reading responses for the OCSP tests, with
asn1crypto and cryptography, and talking to a responder over HTTP."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from asn1crypto import core
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from tests.support import run

HASHES = {
    "sha1": lambda data: hashlib.sha1(data).digest(),  # noqa: S324
    "sha256": lambda data: hashlib.sha256(data).digest(),
    "sha512": lambda data: hashlib.sha512(data).digest(),
}


def cert_id(
    issuer: x509.Certificate,
    serial_number: int,
    hash_name: str = "sha1",
    name_hash: bytes | None = None,
    key_hash: bytes | None = None,
) -> dict[str, Any]:
    """A CertID for ``serial_number`` of ``issuer``; hashes may be overridden."""
    parsed = asn1_x509.Certificate.load(issuer.public_bytes(Encoding.DER))
    digest = HASHES[hash_name]
    return {
        "hash_algorithm": {"algorithm": hash_name},
        "issuer_name_hash": name_hash
        if name_hash is not None
        else digest(parsed.subject.dump()),
        "issuer_key_hash": key_hash
        if key_hash is not None
        else digest(parsed.public_key["public_key"].contents[1:]),
        "serial_number": serial_number,
    }


def request_der(
    cert_ids: list[dict[str, Any]], nonce: bytes | None = None, nonces: int = 1
) -> bytes:
    """A DER OCSPRequest for ``cert_ids``, with a nonce (``nonces`` times)
    when given."""
    tbs: dict[str, Any] = {
        "request_list": [{"req_cert": each} for each in cert_ids],
    }
    if nonce is not None:
        tbs["request_extensions"] = [
            {
                "extn_id": "nonce",
                "critical": False,
                "extn_value": core.OctetString(nonce),
            }
        ] * nonces
    return asn1_ocsp.OCSPRequest({"tbs_request": tbs}).dump()


@dataclasses.dataclass
class HttpAnswer:
    status: int
    headers: Any
    body: bytes

    def ocsp(self) -> ocsp.OCSPResponse:
        assert self.status == 200, self.body
        assert self.headers["Content-Type"] == "application/ocsp-response"
        return ocsp.load_der_ocsp_response(self.body)


def post(
    address: str,
    body: bytes,
    path: str = "/ocsp",
    headers: dict[str, str] | None = None,
) -> HttpAnswer:
    request = urllib.request.Request(
        f"http://{address}{path}",
        data=body,
        method="POST",
        headers={"Content-Type": "application/ocsp-request", **(headers or {})},
    )
    return _send(request)


def get(address: str, path: str) -> HttpAnswer:
    return _send(urllib.request.Request(f"http://{address}{path}"))


def get_path(key_id: str, der: bytes) -> str:
    return f"/ocsp/{key_id}/{base64.b64encode(der).decode()}"


def _send(request: urllib.request.Request) -> HttpAnswer:
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return HttpAnswer(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:
        return HttpAnswer(error.code, error.headers, error.read())


def openssl_ocsp(
    issuer: Path, certificate: Path, url: str, root: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    """``openssl ocsp`` as a relying party, verifying against ``root``."""
    return run(
        [
            "openssl",
            "ocsp",
            "-issuer",
            str(issuer),
            "-cert",
            str(certificate),
            "-url",
            url,
            "-CAfile",
            str(root),
            *extra,
        ]
    )
