"""The PKCS#11 signer against a real SoftHSM2 token: keys generated inside
the token stay there, signatures of every key kind verify (with cryptography
and with openssl), sessions are pooled across threads, lost sessions and
logins recover, and every misconfiguration is a clear SignerError that never
shows the PIN."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pkcs11
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509 import ocsp
from pkcs11 import Attribute, ObjectClass

from signers.api import KeyNotFound, KeySpec, SignerContext, SignerError, open_signer
from signers.pkcs11 import Pkcs11Signer, Pkcs11SignerPlugin, _ecdsa_der, ecdsa_width
from signers.pkcs11.module import Module
from signers.pkcs11.uri import KeyUri, key_uri_in
from tests.support import SoftHsmToken, common_name, require_tool, run

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
SPECS: list[KeySpec] = ["ec-p256", "ec-p384", "rsa-2048"]


def plugin_for(environ: dict[str, str] | None = None) -> Pkcs11SignerPlugin:
    return Pkcs11SignerPlugin(
        SignerContext(data_dir=Path("/nonexistent"), environ=environ or {})
    )


def generate(softhsm: SoftHsmToken, spec: KeySpec, label: str = "ca") -> Pkcs11Signer:
    signer = plugin_for().generate(softhsm.key_uri(label), spec)
    assert isinstance(signer, Pkcs11Signer)
    return signer


def hash_for(signer: Pkcs11Signer) -> hashes.SHA256 | hashes.SHA384:
    public_key = signer.public_key()
    if isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.key_size > 256:
        return hashes.SHA384()
    return hashes.SHA256()


def ca_certificate(signer: Pkcs11Signer) -> x509.Certificate:
    key = signer.private_key()
    assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    name = common_name("HSM Test CA")
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(signer.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(hours=1))
        .not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(signer.public_key()),
            critical=False,
        )
        .sign(key, hash_for(signer))
    )


def client_certificate(
    signer: Pkcs11Signer, issuer: x509.Certificate, serial_number: int | None = None
) -> x509.Certificate:
    key = signer.private_key()
    assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    subject_key = ec.generate_private_key(ec.SECP256R1())
    return (
        x509.CertificateBuilder()
        .subject_name(common_name("client.example"))
        .issuer_name(issuer.subject)
        .public_key(subject_key.public_key())
        .serial_number(serial_number or x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(hours=1))
        .not_valid_after(NOW + dt.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hash_for(signer))
    )


def write_pem(
    path: Path, *objects: x509.Certificate | x509.CertificateRevocationList
) -> Path:
    path.write_bytes(
        b"".join(item.public_bytes(serialization.Encoding.PEM) for item in objects)
    )
    return path


# Keys in the token --------------------------------------------------------


@pytest.mark.parametrize("spec", SPECS)
def test_generated_key_stays_in_the_token(softhsm: SoftHsmToken, spec: KeySpec) -> None:
    """The private key is sensitive and was never extractable; only its
    public half and signatures come out."""
    signer = generate(softhsm, spec)

    lib = Module.load(softhsm.module_path).lib
    # The signer logged this process in; a session without a PIN shares it.
    with lib.get_token(token_label=softhsm.label).open() as session:
        (key,) = session.get_objects(
            {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: "ca"}
        )
        assert key[Attribute.SENSITIVE] is True
        assert key[Attribute.EXTRACTABLE] is False
        assert key[Attribute.ALWAYS_SENSITIVE] is True
        assert key[Attribute.NEVER_EXTRACTABLE] is True
        assert key[Attribute.TOKEN] is True
        assert key[Attribute.PRIVATE] is True
        with pytest.raises(pkcs11.exceptions.AttributeSensitive):
            key[
                Attribute.VALUE if spec.startswith("ec") else Attribute.PRIVATE_EXPONENT
            ]
    description = signer.describe()
    assert description.backend == "pkcs11"
    assert (description.algorithm, description.size) == {
        "ec-p256": ("EC", 256),
        "ec-p384": ("EC", 384),
        "rsa-2048": ("RSA", 2048),
    }[spec]
    signer.close()


def test_generate_never_replaces_a_key(softhsm: SoftHsmToken) -> None:
    first = generate(softhsm, "ec-p256")

    with pytest.raises(SignerError, match="already holds an object with the label"):
        generate(softhsm, "ec-p384")

    reopened = plugin_for().open(softhsm.key_uri("ca"))
    assert reopened.public_key() == first.public_key()


def test_opens_key_by_id_and_token_by_serial(softhsm: SoftHsmToken) -> None:
    signer = plugin_for().generate(
        f"pkcs11:token={softhsm.label};object=by-id;id=%01%ff?pin-source={softhsm.pin_file}",
        "ec-p256",
    )
    serial = (
        Module.load(softhsm.module_path)
        .lib.get_token(token_label=softhsm.label)
        .serial.decode()
    )

    reopened = plugin_for().open(
        f"pkcs11:serial={serial};id=%01%FF?pin-source={softhsm.pin_file}"
    )

    assert reopened.public_key() == signer.public_key()


def test_pin_may_come_from_an_environment_variable(softhsm: SoftHsmToken) -> None:
    generate(softhsm, "ec-p256")
    named = f"pkcs11:token={softhsm.label};object=ca?pin-env=HSM_PIN"
    default = f"pkcs11:token={softhsm.label};object=ca"

    by_name = plugin_for({"HSM_PIN": softhsm.pin}).open(named)
    by_default = plugin_for({"TESSERA_PKCS11_PIN": softhsm.pin}).open(default)

    assert by_name.public_key() == by_default.public_key()


def test_second_signer_on_a_logged_in_token_opens(softhsm: SoftHsmToken) -> None:
    """Login state is per process and token: the second signer finds the
    token already logged in, which is not an error."""
    root = generate(softhsm, "ec-p384", "root")
    intermediate = generate(softhsm, "ec-p256", "intermediate")

    again = plugin_for().open(softhsm.key_uri("root"))

    for signer in (root, intermediate, again):
        signer.sign(b"to be signed", hashes.SHA256())


# Signatures ---------------------------------------------------------------


@pytest.mark.parametrize("spec", ["ec-p256", "ec-p384"])
def test_ecdsa_signatures_are_der_and_verify(
    softhsm: SoftHsmToken, spec: KeySpec
) -> None:
    """Many signatures, so that r or s with leading zero bytes occur."""
    signer = generate(softhsm, spec)
    public_key = signer.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)

    for index in range(64):
        data = f"tbs {index}".encode()
        signature = signer.sign(data, hash_for(signer))
        public_key.verify(signature, data, ec.ECDSA(hash_for(signer)))
        r, s = decode_dss_signature(signature)
        assert r > 0
        assert s > 0


@pytest.mark.parametrize(
    ("curve", "width"),
    [(ec.SECP256R1(), 32), (ec.SECP384R1(), 48), (ec.SECP521R1(), 66)],
)
def test_raw_ecdsa_signature_converts_to_minimal_der(
    curve: ec.EllipticCurve, width: int
) -> None:
    """r || s with leading zeros becomes minimal DER INTEGERs, for every
    curve width (P-521's 66 bytes are not a multiple of 8 bits' worth)."""
    r = 1
    s = int.from_bytes(b"\x80" + b"\x11" * (width - 1), "big")
    raw = r.to_bytes(width, "big") + s.to_bytes(width, "big")

    assert ecdsa_width(curve) == width
    der = _ecdsa_der(raw, width)

    assert decode_dss_signature(der) == (r, s)
    assert der[2:5] == b"\x02\x01\x01"


def test_raw_ecdsa_signature_of_the_wrong_width_is_refused() -> None:
    with pytest.raises(SignerError, match="returned a 63-byte ECDSA signature"):
        _ecdsa_der(b"\x01" * 63, ecdsa_width(ec.SECP256R1()))


def test_rsa_pkcs1v15_and_pss_signatures_verify(softhsm: SoftHsmToken) -> None:
    signer = generate(softhsm, "rsa-2048")
    public_key = signer.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    data = b"to be signed"

    for algorithm in (hashes.SHA256(), hashes.SHA384(), hashes.SHA512()):
        pkcs1 = signer.sign(data, algorithm)
        public_key.verify(pkcs1, data, padding.PKCS1v15(), algorithm)
        for salt in (padding.PSS.DIGEST_LENGTH, padding.PSS.MAX_LENGTH, 20):
            pss = padding.PSS(mgf=padding.MGF1(algorithm), salt_length=salt)
            signature = signer.sign(data, algorithm, pss)
            public_key.verify(signature, data, pss, algorithm)


def test_refuses_hashes_ca_signatures_do_not_use(softhsm: SoftHsmToken) -> None:
    signer = generate(softhsm, "ec-p256")

    with pytest.raises(SignerError, match="sha1 is not a hash CA signatures use"):
        signer.sign(b"data", hashes.SHA1())  # noqa: S303 (the refusal is the point)


# Builders and openssl -------------------------------------------------------


@pytest.mark.parametrize("spec", SPECS)
def test_certificate_crl_and_ocsp_response_signed_in_the_token_verify_with_openssl(
    softhsm: SoftHsmToken, tmp_path: Path, spec: KeySpec
) -> None:
    """cryptography's certificate, CRL and OCSP builders sign through the
    delegating private key; openssl checks all three signatures."""
    openssl = require_tool("openssl")
    signer = generate(softhsm, spec)
    key = signer.private_key()
    assert type(key).__module__ == "signers.api"
    assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    ca = ca_certificate(signer)
    good = client_certificate(signer, ca)
    revoked = client_certificate(signer, ca)
    ca_pem = write_pem(tmp_path / "ca.pem", ca)
    good_pem = write_pem(tmp_path / "good.pem", good)
    revoked_pem = write_pem(tmp_path / "revoked.pem", revoked)

    verified = run([openssl, "verify", "-CAfile", str(ca_pem), str(good_pem)])
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"{good_pem}: OK" in verified.stdout

    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.subject)
        .last_update(NOW)
        .next_update(NOW + dt.timedelta(days=1))
        .add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(revoked.serial_number)
            .revocation_date(NOW - dt.timedelta(minutes=5))
            .build()
        )
        .add_extension(x509.CRLNumber(1), critical=False)
        .sign(key, hash_for(signer))
    )
    crl_pem = write_pem(tmp_path / "crl.pem", crl)
    checked = run(
        [openssl, "crl", "-in", str(crl_pem), "-CAfile", str(ca_pem), "-noout"]
    )
    assert checked.returncode == 0, checked.stderr
    assert "verify OK" in checked.stdout + checked.stderr
    crl_verified = run(
        [
            openssl,
            "verify",
            "-crl_check",
            "-CAfile",
            str(ca_pem),
            "-CRLfile",
            str(crl_pem),
            str(revoked_pem),
        ]
    )
    assert crl_verified.returncode != 0
    assert "certificate revoked" in crl_verified.stdout + crl_verified.stderr

    for subject, status in (
        (good, ocsp.OCSPCertStatus.GOOD),
        (revoked, ocsp.OCSPCertStatus.REVOKED),
    ):
        response = (
            ocsp.OCSPResponseBuilder()
            .add_response(
                cert=subject,
                issuer=ca,
                algorithm=hashes.SHA1(),  # noqa: S303 (RFC 5019 CertID hash)
                cert_status=status,
                this_update=NOW - dt.timedelta(minutes=1),
                next_update=NOW + dt.timedelta(hours=12),
                revocation_time=NOW - dt.timedelta(minutes=5)
                if status == ocsp.OCSPCertStatus.REVOKED
                else None,
                revocation_reason=None,
            )
            .responder_id(ocsp.OCSPResponderEncoding.HASH, ca)
            .sign(key, hash_for(signer))
        )
        response_file = tmp_path / "response.der"
        response_file.write_bytes(response.public_bytes(serialization.Encoding.DER))
        subject_pem = write_pem(tmp_path / "subject.pem", subject)
        answered = run(
            [
                openssl,
                "ocsp",
                "-respin",
                str(response_file),
                "-issuer",
                str(ca_pem),
                "-cert",
                str(subject_pem),
                "-CAfile",
                str(ca_pem),
                "-VAfile",
                str(ca_pem),
            ]
        )
        output = answered.stdout + answered.stderr
        assert answered.returncode == 0, output
        assert "Response verify OK" in output
        expected = "good" if status == ocsp.OCSPCertStatus.GOOD else "revoked"
        assert f"{subject_pem}: {expected}" in output


# Sessions across threads ------------------------------------------------


def test_eight_threads_issue_through_one_signer(softhsm: SoftHsmToken) -> None:
    """Concurrent signatures borrow separate sessions; none fails and every
    certificate's signature is valid."""
    signer = generate(softhsm, "ec-p256")
    ca = ca_certificate(signer)
    issued: list[x509.Certificate] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def issue() -> None:
        try:
            start.wait()
            for _ in range(25):
                certificate = client_certificate(signer, ca)
                with lock:
                    issued.append(certificate)
        except BaseException as error:  # collected for the assertion below
            errors.append(error)

    threads = [threading.Thread(target=issue) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(issued) == 200
    for certificate in issued:
        certificate.verify_directly_issued_by(ca)
    assert 1 <= len(signer.pool.idle_sessions()) <= 8


# Recovery ---------------------------------------------------------------


def test_next_signature_succeeds_after_the_session_is_closed_underneath(
    softhsm: SoftHsmToken,
) -> None:
    """Closing the signer's sessions behind its back also logs the token
    out (its last session closed); the next signature logs in again."""
    signer = generate(softhsm, "ec-p256")
    leases = [signer.pool.acquire() for _ in range(3)]
    for lease in leases:
        signer.pool.release(lease)
    sessions = signer.pool.idle_sessions()
    assert len(sessions) == 3
    for session in sessions:
        session.close()

    signature = signer.sign(b"after the fault", hashes.SHA256())

    public_key = signer.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    public_key.verify(signature, b"after the fault", ec.ECDSA(hashes.SHA256()))


def test_next_signature_succeeds_after_the_module_restarts(
    softhsm: SoftHsmToken,
) -> None:
    """C_Finalize and C_Initialize drop every session and the login."""
    signer = generate(softhsm, "rsa-2048")
    Module.load(softhsm.module_path).reinitialize()

    signature = signer.sign(b"after the restart", hashes.SHA256())

    public_key = signer.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    public_key.verify(
        signature, b"after the restart", padding.PKCS1v15(), hashes.SHA256()
    )


def test_signing_fails_clearly_while_the_token_is_gone_and_recovers_when_back(
    softhsm: SoftHsmToken, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    signer = generate(softhsm, "ec-p256")
    module = Module.load(softhsm.module_path)
    empty = tmp_path / "empty"
    (empty / "tokens").mkdir(parents=True)
    (empty / "softhsm2.conf").write_text(f"directories.tokendir = {empty / 'tokens'}\n")
    monkeypatch.setenv("SOFTHSM2_CONF", str(empty / "softhsm2.conf"))
    module.reinitialize()

    with pytest.raises(SignerError, match=f"has no token '{softhsm.label}'") as gone:
        signer.sign(b"while gone", hashes.SHA256())
    # SoftHSM2's usual reason for having no token: which SOFTHSM2_CONF it read.
    assert f"SOFTHSM2_CONF={empty / 'softhsm2.conf'}" in str(gone.value)

    monkeypatch.setenv("SOFTHSM2_CONF", str(softhsm.directory / "softhsm2.conf"))
    module.reinitialize()
    signer.sign(b"back again", hashes.SHA256())


# Refusals -----------------------------------------------------------------


def test_wrong_pin_is_refused_without_showing_it(
    softhsm: SoftHsmToken, tmp_path: Path
) -> None:
    generate(softhsm, "ec-p256").close()
    wrong = tmp_path / "wrong.pin"
    wrong.write_text("wrong-pin-5309\n")

    with pytest.raises(SignerError) as caught:
        plugin_for().open(f"pkcs11:token={softhsm.label};object=ca?pin-source={wrong}")

    message = str(caught.value)
    assert (
        f"cannot log in to the token '{softhsm.label}': the PIN is incorrect" in message
    )
    assert "wrong-pin-5309" not in message
    assert softhsm.pin not in message


def test_wrong_pin_is_refused_while_the_token_is_logged_in_with_the_right_one(
    softhsm: SoftHsmToken, tmp_path: Path
) -> None:
    """A logged-in token does not check PINs again; the signer does, so a
    wrong PIN cannot hide behind another signer's login until a restart."""
    signer = generate(softhsm, "ec-p256")
    wrong = tmp_path / "wrong.pin"
    wrong.write_text("wrong-pin-5309\n")

    with pytest.raises(
        SignerError, match="differs from the PIN this process"
    ) as caught:
        plugin_for().open(f"pkcs11:token={softhsm.label};object=ca?pin-source={wrong}")

    assert "wrong-pin-5309" not in str(caught.value)
    signer.sign(b"the right PIN still signs", hashes.SHA256())


@pytest.mark.parametrize(
    ("uri_template", "error", "message"),
    [
        (
            "pkcs11:token=absent;object=ca?pin-source={pin_file}",
            SignerError,
            "has no token 'absent'; tokens present: 'tessera'",
        ),
        (
            "pkcs11:token={label};object=absent?pin-source={pin_file}",
            KeyNotFound,
            "holds no private key 'absent'",
        ),
        (
            "pkcs11:token={label};object=ca?pin-source=/nonexistent/pin",
            SignerError,
            "PIN file /nonexistent/pin of the token 'tessera' cannot be read",
        ),
        (
            "pkcs11:token={label};object=ca?pin-env=UNSET_PIN_VARIABLE",
            SignerError,
            "environment variable UNSET_PIN_VARIABLE that should hold the PIN",
        ),
        (
            "pkcs11:token={label};object=ca?pin-value={pin}",
            SignerError,
            "may not carry the PIN \\(pin-value=\\)",
        ),
        (
            "pkcs11:token={label};object=ca?module-path=/nonexistent/libhsm.so",
            SignerError,
            "PKCS#11 module /nonexistent/libhsm.so does not exist",
        ),
        (
            "pkcs11:token={label};objekt=ca",
            SignerError,
            "unknown attribute 'objekt'",
        ),
        ("pkcs11:object=ca", SignerError, "names no token"),
        ("pkcs11:token={label}", SignerError, "names no key"),
    ],
    ids=[
        "missing-token",
        "missing-key",
        "missing-pin-file",
        "unset-pin-variable",
        "pin-value",
        "missing-module",
        "unknown-attribute",
        "no-token",
        "no-key",
    ],
)
def test_misconfigured_key_is_a_clear_error_without_the_pin(
    softhsm: SoftHsmToken, uri_template: str, error: type[SignerError], message: str
) -> None:
    generate(softhsm, "ec-p256")
    uri = uri_template.format(
        label=softhsm.label, pin_file=softhsm.pin_file, pin=softhsm.pin
    )

    with pytest.raises(error, match=message) as caught:
        open_signer(uri, SignerContext(data_dir=Path("/nonexistent"), environ={}))

    assert softhsm.pin not in str(caught.value)


def test_key_store_uri_names_new_keys_in_its_token() -> None:
    store = "pkcs11:token=tessera?pin-source=/etc/tessera/hsm.pin"

    uri = key_uri_in(store, "intermediate payments 1")

    assert uri == (
        "pkcs11:token=tessera;object=intermediate%20payments%201"
        "?pin-source=/etc/tessera/hsm.pin"
    )
    assert KeyUri.parse(uri).object_label == "intermediate payments 1"
    with pytest.raises(SignerError, match="a key store names only the token"):
        key_uri_in("pkcs11:token=tessera;object=root", "x")


def test_module_path_may_come_from_the_configuration(softhsm: SoftHsmToken) -> None:
    generate(softhsm, "ec-p256")
    context = SignerContext(
        data_dir=Path("/nonexistent"),
        environ={},
        pkcs11_module_path="/nonexistent/vendor-hsm.so",
    )

    with pytest.raises(
        SignerError, match=r"module /nonexistent/vendor-hsm\.so does not"
    ):
        open_signer(softhsm.key_uri("ca"), context)
    configured = SignerContext(
        data_dir=Path("/nonexistent"),
        environ={},
        pkcs11_module_path=softhsm.module_path,
    )
    assert open_signer(softhsm.key_uri("ca"), configured).describe().backend == "pkcs11"
