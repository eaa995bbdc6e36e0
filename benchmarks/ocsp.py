"""OCSP responses per second: Tessera's responder next to ``openssl ocsp``.

    .venv/bin/python -m benchmarks.ocsp              # full size (3 rounds, 10 s a run)
    .venv/bin/python -m benchmarks.ocsp --seconds 2 --rounds 1      # a quick look

One run, one load client for both: ``wrk`` with 16 concurrent HTTP/1.1
connections on loopback POSTs an OCSP request for the same certificate to

- Tessera's public listener: two ``tessera serve publication`` processes
  sharing one port (``issuer.publication_shared_port``), as many as openssl
  gets workers, beside a registry and an issuer (in this process, its own
  listener off) and a Redis of the benchmark's own; delegated responder
  with a P-256 key; and
- ``openssl ocsp`` run as a responder (``-index``, ``-rsigner``, ``-rkey``,
  ``-CA``, ``-multi 2``) with a P-256 responder key, answering for the same
  intermediate and serial number from an index file,

first without nonce (Tessera answers from its pre-signed responses), then
with a fresh random 16-octet nonce in every request (both sign each
response). Before each series one request is checked: a successful response
saying "good", echoing the nonce when there is one. On a machine that
other work shares, the load moves while a run goes on, so the series are
repeated in rounds, the two responders in turns (which one goes first
alternates), and each rate and ratio printed is the median over the rounds.
Beside each rate it prints the user and system CPU time the responder's own
processes spent a response (Tessera's publication processes, openssl's
process group), which a busy machine moves less than the rates.
Targets: Tessera at least 2x openssl without nonce and at least 1x with
nonce. For Tessera it also prints how many of its answers were tryLater,
read from its processes' metrics (wrk counts every HTTP 200, and tryLater
is one, so the rates include them).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import datetime as dt
import itertools
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import tenacity
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from benchmarks.deployment import TESSERA, free_port, start_redis
from services.common.config import load_settings
from services.common.logging import configure_logging
from services.common.rpc import open_channel
from services.suite import start_suite
from tessera.issuer.v1 import issuer_pb2, issuer_pb2_grpc

FULL_SECONDS = 10.0
FULL_ROUNDS = 3
CONNECTIONS = 16
THREADS = 2
# openssl's -multi; Tessera gets as many publication processes.
WORKERS = 2
_START_TIMEOUT = 60.0
FRONTDOOR = "bench"
NONCE_OCTETS = 16
# The checkout this benchmark belongs to.
_ROOT = Path(__file__).resolve().parents[1]

# wrk's request body: the request file as is, or with the nonce's octets
# replaced by random ones in every request.
_LUA = """
local prefix, suffix, nonce_length
local headers = {["Content-Type"] = "application/ocsp-request"}
if os.getenv("OCSP_CONNECTION_CLOSE") == "1" then headers["Connection"] = "close" end
function init(args)
  local file = assert(io.open(os.getenv("OCSP_REQUEST_FILE"), "rb"))
  local body = file:read("*a")
  file:close()
  local offset = tonumber(os.getenv("OCSP_NONCE_OFFSET"))
  nonce_length = tonumber(os.getenv("OCSP_NONCE_LENGTH"))
  if nonce_length > 0 then
    prefix = body:sub(1, offset)
    suffix = body:sub(offset + nonce_length + 1)
  else
    prefix = body
  end
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end
function request()
  local body = prefix
  if nonce_length > 0 then
    local octets = {}
    for i = 1, nonce_length do octets[i] = string.char(math.random(0, 255)) end
    body = prefix .. table.concat(octets) .. suffix
  end
  return wrk.format("POST", nil, headers, body)
end
"""


@dataclasses.dataclass(frozen=True)
class Series:
    """One wrk run against one responder."""

    responder: str
    nonce: bool
    requests_per_second: float
    errors: str
    round: int = 0
    # User and system CPU time the responder's processes spent on each
    # response, in microseconds: what a busy machine moves less than rates.
    cpu_per_response: float = 0.0
    # Tessera's answers in the run, and how many of them were tryLater (its
    # metrics; openssl's responder has none).
    answers: int = 0
    try_later: int = 0

    def line(self) -> str:
        kind = "nonce   " if self.nonce else "no nonce"
        problems = [self.errors] if self.errors else []
        if self.answers:
            problems.append(
                f"tryLater {self.try_later} of {self.answers}, "
                f"{self.try_later / self.answers:.2%}"
            )
        trouble = f" ({'; '.join(problems)})" if problems else ""
        return (
            f"  {self.responder:8} {kind}: {self.requests_per_second:9.0f} "
            f"responses/s, {self.cpu_per_response:5.0f} us CPU a response{trouble}"
        )


@dataclasses.dataclass(frozen=True)
class Report:
    """Both responders, without and with nonce, in one or more rounds."""

    series: list[Series]
    seconds: float

    @property
    def rounds(self) -> int:
        return len({each.round for each in self.series})

    def _rates(self, responder: str, nonce: bool) -> dict[int, float]:
        return {
            each.round: each.requests_per_second
            for each in self.series
            if each.responder == responder and each.nonce == nonce
        }

    def rate(self, responder: str, nonce: bool) -> float:
        """The median rate over the rounds."""
        return statistics.median(self._rates(responder, nonce).values())

    def cpu(self, responder: str, nonce: bool) -> float:
        """The median CPU time a response over the rounds, microseconds."""
        return statistics.median(
            each.cpu_per_response
            for each in self.series
            if each.responder == responder and each.nonce == nonce
        )

    def ratios(self, nonce: bool) -> list[float]:
        """Tessera's rate over openssl's, round by round."""
        tessera = self._rates("tessera", nonce)
        openssl = self._rates("openssl", nonce)
        return [
            tessera[number] / max(openssl[number], 1e-9) for number in sorted(tessera)
        ]

    def ratio(self, nonce: bool) -> float:
        """The median of the rounds' ratios."""
        return statistics.median(self.ratios(nonce))

    def text(self) -> str:
        rounds = self.rounds
        lines = [
            f"OCSP responses per second, wrk {CONNECTIONS} connections, "
            f"{self.seconds:g} s a run, loopback"
            + (f", median of {rounds} rounds:" if rounds > 1 else ":"),
        ]
        for nonce in (False, True):
            for responder in ("openssl", "tessera"):
                errors = "; ".join(
                    each.errors
                    for each in self.series
                    if each.responder == responder and each.nonce == nonce
                    if each.errors
                )
                rate = self.rate(responder, nonce)
                cpu = self.cpu(responder, nonce)
                counted = [
                    each
                    for each in self.series
                    if each.responder == responder and each.nonce == nonce
                ]
                lines.append(
                    Series(
                        responder,
                        nonce,
                        rate,
                        errors,
                        cpu_per_response=cpu,
                        # Over all rounds, not a median.
                        answers=sum(each.answers for each in counted),
                        try_later=sum(each.try_later for each in counted),
                    ).line()
                )
        for nonce, label, target in (
            (False, "without nonce:", 2),
            (True, "with nonce:", 1),
        ):
            each_round = ""
            if rounds > 1:
                listed = ", ".join(f"{ratio:.2f}" for ratio in self.ratios(nonce))
                each_round = f" (rounds: {listed})"
            lines.append(
                f"  ratio tessera/openssl {label:15}{self.ratio(nonce):.2f} "
                f"(target >= {target}){each_round}"
            )
        return "\n".join(lines)


def _issue(issuer_address: str) -> tuple[x509.Certificate, x509.Certificate]:
    """A client certificate of the frontdoor, and its intermediate."""
    channel = open_channel(issuer_address)
    try:
        stub = issuer_pb2_grpc.IssuerServiceStub(channel)
        stub.CreateFrontdoor(
            issuer_pb2.CreateFrontdoorRequest(name=FRONTDOOR), timeout=30
        )
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(
                x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench.example")])
            )
            .sign(key, hashes.SHA256())
            .public_bytes(serialization.Encoding.DER)
        )
        issued = stub.IssueCertificate(
            issuer_pb2.IssueCertificateRequest(csr=csr, frontdoor=FRONTDOOR), timeout=30
        )
    finally:
        channel.close()
    return (
        x509.load_der_x509_certificate(issued.certificate),
        x509.load_der_x509_certificate(issued.chain[0]),
    )


def _request(
    certificate: x509.Certificate, issuer: x509.Certificate, nonce: bytes | None
) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(
        certificate,
        issuer,
        hashes.SHA1(),  # noqa: S303 (RFC 5019 clients send SHA-1 CertIDs)
    )
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


class _TryLater(RuntimeError):
    """The responder said tryLater: its registry was slow to answer."""


# On a machine loaded by other work the registry may take longer than the
# issuer waits for it, and a responder rightly says tryLater then; the check
# asks again rather than abandon the run.
@tenacity.retry(
    retry=tenacity.retry_if_exception_type(_TryLater),
    stop=tenacity.stop_after_attempt(5),
    wait=tenacity.wait_fixed(1),
    reraise=True,
)
def _check(url: str, body: bytes, nonce: bytes | None) -> None:
    """One request: a successful, good response (echoing the nonce)."""
    request = urllib.request.Request(  # noqa: S310 (http: URLs built here)
        url, data=body, headers={"Content-Type": "application/ocsp-request"}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
        response = ocsp.load_der_ocsp_response(answer.read())
    if response.response_status == ocsp.OCSPResponseStatus.TRY_LATER:
        raise _TryLater(f"{url} answered {response.response_status}")
    if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise RuntimeError(f"{url} answered {response.response_status}")
    if response.certificate_status != ocsp.OCSPCertStatus.GOOD:
        raise RuntimeError(f"{url} did not say good: {response.certificate_status}")
    if nonce is not None:
        echoed = response.extensions.get_extension_for_class(x509.OCSPNonce)
        if echoed.value.nonce != nonce:
            raise RuntimeError(f"{url} did not echo the nonce")


def _openssl_responder(
    directory: Path, certificate: x509.Certificate, issuer: x509.Certificate
) -> tuple[subprocess.Popen[bytes], str]:
    """``openssl ocsp`` as a responder for the intermediate, knowing the
    certificate as valid; its URL once it answers."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "openssl responder")])
    responder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    (directory / "rsigner.pem").write_bytes(
        responder.public_bytes(serialization.Encoding.PEM)
    )
    (directory / "rkey.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (directory / "ca.pem").write_bytes(issuer.public_bytes(serialization.Encoding.PEM))
    expiry = certificate.not_valid_after_utc.strftime("%y%m%d%H%M%SZ")
    (directory / "index.txt").write_text(
        f"V\t{expiry}\t\t{certificate.serial_number:X}\tunknown\t/CN=bench.example\n"
    )
    port = free_port()
    process = subprocess.Popen(
        [
            "openssl",
            "ocsp",
            "-index",
            str(directory / "index.txt"),
            "-port",
            str(port),
            "-rsigner",
            str(directory / "rsigner.pem"),
            "-rkey",
            str(directory / "rkey.pem"),
            "-CA",
            str(directory / "ca.pem"),
            "-nmin",
            "60",
            "-multi",
            str(WORKERS),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 30
    probe = _request(certificate, issuer, None)
    while True:
        try:
            _check(url, probe, None)
            return process, url
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                _stop(process)
                raise RuntimeError("openssl ocsp did not start answering") from None
            time.sleep(0.1)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop an openssl responder and its workers: with -multi it makes
    itself the leader of a process group of its own (and refuses to start
    as a session leader, so it cannot be given one)."""
    with contextlib.suppress(ProcessLookupError):
        if os.getpgid(process.pid) == process.pid:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
    process.wait(timeout=10)


def _process_group(group: int) -> list[int]:
    """The processes of a process group (openssl's leader and workers)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
                if int(fields[2]) == group:
                    members.append(int(entry.name))
    return members


def _cpu_seconds(pids: Sequence[int]) -> float:
    """User and system CPU time the processes have used so far."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            # utime and stime: fields 14 and 15 of proc(5), counted from 3 here.
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _wrk(
    url: str, body: bytes, nonce_offset: int, seconds: float, directory: Path
) -> tuple[float, str]:
    """Requests per second wrk measured, and any errors it reported."""
    script = directory / "ocsp.lua"
    script.write_text(_LUA)
    request_file = directory / f"request-{nonce_offset}.der"
    request_file.write_bytes(body)
    environment = {
        **os.environ,
        "OCSP_REQUEST_FILE": str(request_file),
        "OCSP_NONCE_OFFSET": str(nonce_offset),
        "OCSP_NONCE_LENGTH": str(NONCE_OCTETS if nonce_offset >= 0 else 0),
    }
    result = subprocess.run(
        [
            "wrk",
            "-t",
            str(THREADS),
            "-c",
            str(CONNECTIONS),
            "-d",
            f"{seconds:g}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        env=environment,
        timeout=seconds + 60,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"wrk failed: {result.stderr or result.stdout}")
    rate = re.search(r"Requests/sec:\s+([0-9.]+)", result.stdout)
    if rate is None:
        raise RuntimeError(f"wrk printed no rate: {result.stdout}")
    errors = []
    socket_errors = re.search(r"Socket errors: (.*)", result.stdout)
    if socket_errors:
        errors.append(f"socket errors: {socket_errors.group(1)}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", result.stdout)
    if non_2xx:
        errors.append(f"{non_2xx.group(1)} non-2xx responses")
    return float(rate.group(1)), "; ".join(errors)


def run(seconds: float = FULL_SECONDS, rounds: int = 1) -> Report:
    """Measure both responders, without and with nonce, ``rounds`` times."""
    if shutil.which("wrk") is None or shutil.which("openssl") is None:
        raise RuntimeError(
            "the OCSP benchmark needs wrk and openssl; scripts/setup.sh --test "
            "installs them"
        )
    with tempfile.TemporaryDirectory(prefix="tessera-bench-ocsp-") as name:
        directory = Path(name)
        redis_server, redis_url = start_redis(directory / "redis")
        settings = load_settings(
            data_dir=directory / "data",
            metrics_listen="",
            redis_url=redis_url,
            issuer={"listen": "127.0.0.1:0", "publication_listen": ""},
            registry={"listen": "127.0.0.1:0"},
        )
        suite = start_suite(settings, ["registry", "issuer"])
        publications: list[subprocess.Popen[bytes]] = []
        try:
            certificate, issuer = _issue(suite.address("issuer"))
            publication = f"127.0.0.1:{free_port()}"
            metrics_urls = [
                f"http://127.0.0.1:{free_port()}/metrics" for _ in range(WORKERS)
            ]
            publications = _publication_processes(
                directory,
                redis_url,
                suite.address("registry"),
                publication,
                metrics_urls,
            )
            tessera_url = f"http://{publication}/ocsp/" + (
                x509.SubjectKeyIdentifier.from_public_key(
                    issuer.public_key()
                ).key_identifier.hex()
            )
            plain = _request(certificate, issuer, None)
            marker = b"\xa5" * NONCE_OCTETS
            with_nonce = _request(certificate, issuer, marker)
            offset = with_nonce.index(marker)
            series = []
            for number, nonce in itertools.product(range(rounds), (False, True)):
                body = with_nonce if nonce else plain
                # Turn about, so that a load that grows or shrinks during
                # the run does not always favour the same responder.
                order = ("openssl", "tessera")
                if number % 2:
                    order = ("tessera", "openssl")
                for responder in order:
                    # openssl 3.0's workers spin once wrk drops its kept-alive
                    # connections, so each series gets a fresh responder.
                    openssl = None
                    url = tessera_url
                    if responder == "openssl":
                        openssl, url = _openssl_responder(
                            directory, certificate, issuer
                        )
                    try:
                        _check(url, body, marker if nonce else None)
                        pids = (
                            [process.pid for process in publications]
                            if openssl is None
                            else _process_group(openssl.pid)
                        )
                        cpu_before = _cpu_seconds(pids)
                        answers_before = _answers(metrics_urls, openssl)
                        rate, errors = _wrk(
                            url, body, offset if nonce else -1, seconds, directory
                        )
                        cpu = _cpu_seconds(pids) - cpu_before
                        answers = _answers(metrics_urls, openssl) - answers_before
                    finally:
                        if openssl is not None:
                            _stop(openssl)
                    responses = max(rate * seconds, 1.0)
                    series.append(
                        Series(
                            responder,
                            nonce,
                            rate,
                            errors,
                            number,
                            cpu / responses * 1e6,
                            answers=sum(answers.values()),
                            try_later=int(answers["try_later"]),
                        )
                    )
        finally:
            for process in publications:
                process.terminate()
            for process in publications:
                process.wait(timeout=30)
            suite.stop()
            redis_server.terminate()
            redis_server.wait(timeout=10)
    return Report(series, seconds)


def _answers(
    metrics_urls: Sequence[str], openssl: subprocess.Popen[bytes] | None
) -> collections.Counter[str]:
    """Tessera's OCSP answers so far by OCSPResponseStatus, over its
    publication processes (nothing while openssl is measured)."""
    counts: collections.Counter[str] = collections.Counter()
    if openssl is not None:
        return counts
    for url in metrics_urls:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (loopback)
            text = response.read().decode()
        for match in _ANSWERS.finditer(text):
            counts[match.group(1)] += int(float(match.group(2)))
    return counts


_ANSWERS = re.compile(
    r'^tessera_ocsp_responses_total\{[^}]*response_status="([a-z_]+)"[^}]*\} (\S+)$',
    re.MULTILINE,
)


def _publication_processes(
    directory: Path,
    redis_url: str,
    registry: str,
    listen: str,
    metrics_urls: Sequence[str],
) -> list[subprocess.Popen[bytes]]:
    """``WORKERS`` publication processes on one port, once each serves."""
    environment = {
        **{
            key: value
            for key, value in os.environ.items()
            if not key.startswith("TESSERA_")
        },
        "TESSERA_DATA_DIR": str(directory / "data"),
        "TESSERA_REDIS_URL": redis_url,
        "TESSERA_LOG_LEVEL": "warning",
        "TESSERA_ISSUER__REGISTRY_ADDRESS": registry,
        "TESSERA_ISSUER__PUBLICATION_LISTEN": listen,
        "TESSERA_ISSUER__PUBLICATION_SHARED_PORT": "true",
        # The ``tessera`` script imports the package its environment was
        # installed from; this makes the processes run the code beside this
        # benchmark (a second checkout, say) instead.
        "PYTHONPATH": os.pathsep.join(
            [str(_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
    }
    processes = []
    logs = []
    for number in range(WORKERS):
        log = directory / f"publication-{number}.log"
        logs.append(log)
        # Each process's own metrics listener, to count its tryLater answers.
        metrics_listen = urllib.parse.urlsplit(metrics_urls[number]).netloc
        with log.open("wb") as output:
            processes.append(
                subprocess.Popen(
                    [TESSERA, "serve", "publication"],
                    env={**environment, "TESSERA_METRICS_LISTEN": metrics_listen},
                    stdout=output,
                    stderr=output,
                )
            )
    deadline = time.monotonic() + _START_TIMEOUT
    # The CLI prints this line once the listener is bound.
    while not all("Press Ctrl-C" in log.read_text(errors="replace") for log in logs):
        if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
            for process in processes:
                process.kill()
            text = "\n".join(log.read_text(errors="replace") for log in logs)
            raise RuntimeError(f"the publication processes did not start:\n{text}")
        time.sleep(0.1)
    return processes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--seconds",
        type=float,
        default=FULL_SECONDS,
        help=f"duration of each wrk run (default {FULL_SECONDS:g})",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=FULL_ROUNDS,
        help=f"rounds of the four series, medians reported (default {FULL_ROUNDS})",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    configure_logging("console", "warning")
    print(run(args.seconds, args.rounds).text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
