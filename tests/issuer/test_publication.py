"""The issuer's public HTTP listener: CA certificates at their AIA URLs."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.x509.oid import AuthorityInformationAccessOID

from services.common.config import ConfigError
from services.issuer.publication import PublicationServer
from services.suite import Suite
from tests.support import Clients


def _get(suite: Suite, path: str) -> tuple[int, str, bytes]:
    """Status, content type and body of a GET on the suite's listener."""
    assert suite.publication is not None
    url = f"http://{suite.publication}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


def _ca_issuers_path(certificate: x509.Certificate) -> str:
    access = certificate.extensions.get_extension_for_class(
        x509.AuthorityInformationAccess
    ).value
    (url,) = [
        each.access_location.value
        for each in access
        if each.access_method == AuthorityInformationAccessOID.CA_ISSUERS
    ]
    return urllib.parse.urlsplit(url).path


def test_serves_each_ca_at_the_url_its_certificates_name(
    suite: Suite, clients: Clients
) -> None:
    """The caIssuers URL of a client certificate and of its intermediate
    answer with the issuing CA's certificate in DER."""
    clients.create_frontdoor("payments")
    issued = clients.issue("payments")
    client = x509.load_der_x509_certificate(issued.certificate)
    intermediate, root = issued.chain

    status, content_type, body = _get(suite, _ca_issuers_path(client))
    assert (status, content_type, body) == (200, "application/pkix-cert", intermediate)

    status, _, body = _get(
        suite, _ca_issuers_path(x509.load_der_x509_certificate(intermediate))
    )
    assert (status, body) == (200, root)


def test_unknown_ca_is_not_found(suite: Suite) -> None:
    """A key id no CA here has gets 404 with a sentence, not an error page."""
    status, _, body = _get(suite, "/ca/" + "ab" * 20 + ".crt")

    assert status == 404
    assert b"no CA with key id" in body


def test_oversized_request_is_refused() -> None:
    """A body above the size limit gets 413 and the listener keeps serving."""

    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=await request.read())

    server = PublicationServer("127.0.0.1:0", [web.post("/echo", echo)], 1024)
    address = server.start()
    try:

        def post(size: int) -> int:
            request = urllib.request.Request(
                f"http://{address}/echo", data=b"x" * size, method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                    return int(response.status)
            except urllib.error.HTTPError as error:
                return error.code

        assert post(1024 * 1024) == 413
        assert post(1000) == 200
    finally:
        server.stop()


def test_taken_port_is_a_configuration_error(suite: Suite) -> None:
    """A second listener on a bound port says which setting to change."""
    assert suite.publication is not None
    second = PublicationServer(suite.publication, [])

    with pytest.raises(ConfigError, match="publication_listen"):
        second.start()
