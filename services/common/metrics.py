"""Prometheus metrics of the services, and the endpoint that serves them."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from services.common.config import ConfigError

RPC_DURATION = Histogram(
    "tessera_rpc_duration_seconds",
    "Time spent serving gRPC calls, by service, method and status code.",
    ["service", "method", "code"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
CERTIFICATES_ISSUED = Counter(
    "tessera_certificates_issued_total",
    "Client certificates signed, by frontdoor.",
    ["frontdoor"],
)
REVOCATIONS = Counter(
    "tessera_revocations_total",
    "Certificates revoked, by frontdoor and RFC 5280 reason.",
    ["frontdoor", "reason"],
)
VERDICTS = Counter(
    "tessera_validation_verdicts_total",
    "Validation verdicts, by frontdoor and first reason.",
    ["frontdoor", "reason"],
)
REVOCATION_LOOKUPS = Counter(
    "tessera_revocation_lookups_total",
    "How the validator established revocation status: stream, cache, registry, or "
    "unknown.",
    ["source"],
)
REVOCATION_WATCHERS = Gauge(
    "tessera_revocation_watchers",
    "WatchRevocations streams this registry process serves now.",
)
REVOCATION_ENFORCEMENT = Histogram(
    "tessera_revocation_enforcement_seconds",
    "From a revocation's revocation_date to the moment this validator applied it "
    "from the revocation stream and refuses the certificate.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
REVOCATION_STREAM_SEQUENCE = Gauge(
    "tessera_revocation_stream_sequence",
    "The last revocation-log sequence this validator applied from the stream.",
)
OCSP_REVOCATION_SEQUENCE = Gauge(
    "tessera_ocsp_revocation_stream_sequence",
    "The last revocation-log sequence this process's OCSP responder applied from "
    "the stream: from then on it answers that certificate revoked.",
)

CRL_SIZE = Gauge(
    "tessera_crl_size_bytes",
    "Size of the newest published CRL (DER), by frontdoor and issuing CA key id; "
    "the platform root's CRL has an empty frontdoor.",
    ["frontdoor", "issuer_key_id"],
)
CRL_ENTRIES = Gauge(
    "tessera_crl_entries",
    "Revoked certificates listed in the newest published CRL, by frontdoor and "
    "issuing CA key id.",
    ["frontdoor", "issuer_key_id"],
)
CRL_AGE = Gauge(
    "tessera_crl_age_seconds",
    "Seconds since the thisUpdate of the newest published CRL, by frontdoor and "
    "issuing CA key id, as of the CRL job's last pass.",
    ["frontdoor", "issuer_key_id"],
)
OCSP_RESPONSES = Counter(
    "tessera_ocsp_responses_total",
    "OCSP responses, by OCSPResponseStatus (successful, malformed_request, "
    "unauthorized, try_later, internal_error) and by how they were made: hit or "
    "miss of the pre-signed cache, nonce (signed for the request), several "
    "(several certificates, signed for the request) or error.",
    ["response_status", "cache"],
)
OCSP_CERTIFICATE_STATUSES = Counter(
    "tessera_ocsp_certificate_statuses_total",
    "Certificate statuses in successful OCSP responses: good, revoked, unknown.",
    ["status"],
)

USAGE_REPORTS = Counter(
    "tessera_usage_reports_total",
    "Usage reports (ReportUsage calls) this validator made, by outcome: sent or "
    "failed (the entries wait for the next flush).",
    ["outcome"],
)
USAGE_ENTRIES_REPORTED = Counter(
    "tessera_usage_entries_reported_total",
    "Certificate usage entries (certificate, frontdoor, last seen) this validator "
    "delivered to the registry.",
)
USAGE_ENTRIES_DROPPED = Counter(
    "tessera_usage_entries_dropped_total",
    "Certificate usage entries this validator dropped because its buffer held "
    "validator.usage_max_entries already (the registry was unreachable for long, "
    "or more distinct certificates were seen than the buffer holds).",
)
USAGE_ENTRIES_PENDING = Gauge(
    "tessera_usage_entries_pending",
    "Certificate usage entries this validator holds for its next report.",
)
USAGE_ENTRIES_RECEIVED = Counter(
    "tessera_usage_entries_received_total",
    "Usage entries the registry received, by result: recorded, "
    "unknown_certificate or unknown_frontdoor (both ignored).",
    ["result"],
)
CERTIFICATE_EXPIRY_SECONDS = Gauge(
    "tessera_certificate_expiry_seconds",
    "Seconds until the chain of a certificate expires (its earliest notAfter), "
    "as of the expiry monitor's last pass; only for certificates inside the "
    "largest warning window of their frontdoor (empty for the platform root).",
    ["fingerprint", "frontdoor"],
)
EXPIRING_CERTIFICATES = Gauge(
    "tessera_expiring_certificates",
    "Active certificates inside a warning window, by frontdoor and the "
    "narrowest window they reached (days), as of the expiry monitor's last pass.",
    ["frontdoor", "window_days"],
)
EXPIRY_NOTIFICATIONS = Counter(
    "tessera_expiry_notifications_total",
    "Expiry notifications by sink (log, webhook) and outcome: sent, failed (one "
    "webhook attempt that failed) or dead_lettered (every attempt failed).",
    ["sink", "outcome"],
)


def serve_metrics(listen: str) -> None:
    """Serve /metrics on ``host:port`` in a background thread."""
    host, _, port = listen.rpartition(":")
    try:
        start_http_server(int(port), addr=host or "127.0.0.1")
    except (OSError, ValueError) as error:
        raise ConfigError(
            f"metrics cannot be served on {listen} ({error}); when several Tessera "
            "processes share a host, give each its own metrics_listen "
            "(TESSERA_METRICS_LISTEN), or set it to an empty string to switch "
            "metrics off"
        ) from None
