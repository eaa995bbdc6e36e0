"""Starting Tessera's services: one of them, or all three in one process.

Without a Redis URL the services share an in-process revocation cache, so
they must run together in one process (the embedded default). With Redis,
each service may run in its own processes, as many as needed.

The issuer's public HTTP listener may also run on its own, as the
``publication`` service: CA certificates, CRLs, bundles and OCSP, read from
the issuer's database, the registry and Redis, without the issuer's gRPC
server and without its periodic jobs (CRL rebuilds and responder renewal
stay with the issuer, under their leases). Several such processes, and the
issuer's own listener, may share one port (``issuer.publication_shared_port``,
SO_REUSEPORT), which is how the listener uses more than one core. Tessera
does not start them itself: like the other services, they are started and
restarted by whatever supervises processes (systemd, Kubernetes), which
already does it well; a parent that forks children would have to restart,
drain and signal them, and would hide a dead child behind a live port.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Callable, Iterable

import grpc
import sqlalchemy as sa

from services.common import metrics
from services.common.audit import AuditLog
from services.common.clock import Clock, SystemClock
from services.common.config import ConfigError, Settings
from services.common.database import Database, migrate
from services.common.errors import Unavailable
from services.common.leases import Lease
from services.common.logging import get_logger
from services.common.metrics import serve_metrics
from services.common.revocation_cache import RevocationCache, open_cache
from services.common.rpc import RunningServer, open_channel, start_server
from services.issuer.authority import CertificateAuthority, Hierarchy
from services.issuer.crl import LEASE_NAME as CRL_LEASE_NAME
from services.issuer.crl import (
    CrlPublisher,
    CrlSchedule,
    CrlStore,
    PublishedCrl,
    Rebuild,
)
from services.issuer.distribution import Distribution, distribution_routes
from services.issuer.ocsp import LEASE_NAME as OCSP_LEASE_NAME
from services.issuer.ocsp import (
    CaSigning,
    DelegatedResponders,
    OcspResponder,
    RedisPresigned,
    ResponseSigning,
)
from services.issuer.ocsp_http import ocsp_routes
from services.issuer.publication import PublicationServer, ca_certificate_routes
from services.issuer.server import SERVICE_NAME as ISSUER_SERVICE
from services.issuer.server import IssuerServicer
from services.issuer.service import Issuer
from services.registry.cache_sync import LEASE_NAME, CacheSync
from services.registry.client import RegistryClient
from services.registry.expiry import ExpiryMonitor, ExpiryRecords, open_monitor
from services.registry.revocation_bus import open_bus
from services.registry.server import SERVICE_NAME as REGISTRY_SERVICE
from services.registry.server import RegistryServicer
from services.registry.store import RegistryStore
from services.registry.subscriber import RevocationSubscriber
from services.registry.watch import RevocationWatch, WatchLimits
from services.validator.revocation import RevocationChecker, StreamedRevocations
from services.validator.revocation_events import RevocationEvents
from services.validator.server import SERVICE_NAME as VALIDATOR_SERVICE
from services.validator.server import ValidatorServicer
from services.validator.service import Validator
from services.validator.trust import TrustStores
from services.validator.usage import UsageReporter
from services.validator.verdicts import VerdictCache
from signers.api import SignerContext
from tessera.issuer.v1 import issuer_pb2_grpc
from tessera.registry.v1 import registry_pb2_grpc
from tessera.validator.v1 import validator_pb2_grpc

SERVICES = ("registry", "issuer", "validator")
# Started only by name, never as part of "all": it adds processes beside an
# issuer.
PUBLICATION = "publication"
_log = get_logger(__name__)
# Who the issuer names in the audit log for what it does on its own.
SYSTEM_ACTOR = "tessera (issuer start-up)"
_RPC_WORKERS = 32
_CRL_LEASE = dt.timedelta(seconds=60)
# How often the issuer looks for OCSP responder certificates past half
# their life (days); the lease passes to another process after five misses.
_OCSP_RENEWAL_INTERVAL = dt.timedelta(minutes=1)


@dataclasses.dataclass
class Suite:
    """Running services and what must be closed when they stop."""

    servers: dict[str, RunningServer] = dataclasses.field(default_factory=dict)
    # Long-lived streams, ended before the servers stop so that a server
    # does not wait out its grace period for them.
    _streams: list[Callable[[], None]] = dataclasses.field(default_factory=list)
    _closers: list[Callable[[], None]] = dataclasses.field(default_factory=list)
    # The validator's subscription to the revocation stream, when it runs.
    revocation_subscriber: RevocationSubscriber | None = None
    # The issuer's public HTTP listener (host:port), when it runs.
    publication: str | None = None
    # The issuer's CRL rebuild job, when the issuer runs.
    crl_publisher: CrlPublisher | None = None
    # The issuer's OCSP responder and, in delegated mode, its responders.
    ocsp_responder: OcspResponder | None = None
    ocsp_delegated: DelegatedResponders | None = None
    # The validator's usage reporter, when the validator runs and reports.
    usage_reporter: UsageReporter | None = None
    # The registry's expiry monitor, when the registry runs.
    expiry_monitor: ExpiryMonitor | None = None

    def address(self, service: str) -> str:
        return self.servers[service].address

    def stop(self) -> None:
        """End streams, stop servers, then background jobs and connections."""
        # Subscribers (added last) go before the streams they follow end.
        for end in reversed(self._streams):
            end()
        for server in self.servers.values():
            server.stop()
        for close in reversed(self._closers):
            close()
        self.servers.clear()
        self._streams.clear()
        self._closers.clear()


def start_suite(
    settings: Settings,
    services: Iterable[str] = SERVICES,
    clock: Clock | None = None,
    cache: RevocationCache | None = None,
) -> Suite:
    """Start the named services with ``settings``.

    A service started here reaches the registry at the address this process
    started it on, or at the configured address otherwise.
    """
    wanted = list(services)
    unknown = set(wanted) - {*SERVICES, PUBLICATION}
    if unknown:
        raise ConfigError(
            f"unknown service {sorted(unknown)[0]!r}; choose from "
            f"{(*SERVICES, PUBLICATION)}"
        )
    if not settings.redis_url and PUBLICATION in wanted:
        raise ConfigError(
            "a publication process answers beside the issuer and needs Redis to "
            "share pre-signed OCSP responses and hear of revocations; without a "
            "Redis URL the issuer's own listener is the only one. Set "
            "TESSERA_REDIS_URL (redis_url)"
        )
    if not settings.redis_url and settings.issuer.publication_shared_port:
        raise ConfigError(
            "issuer.publication_shared_port lets several processes serve the "
            "publication port, and they share pre-signed OCSP responses and "
            "revocations through Redis; set TESSERA_REDIS_URL (redis_url), or "
            "switch issuer.publication_shared_port off"
        )
    if not settings.redis_url and set(wanted) != set(SERVICES):
        raise ConfigError(
            "without a Redis URL the services share an in-process cache, so they must "
            "run together; start all three, or set TESSERA_REDIS_URL"
        )
    clock = clock or SystemClock()
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    suite = Suite()
    try:
        if cache is None:
            cache = open_cache(settings.redis_url)
            suite._closers.append(cache.close)
        local_registry = None
        if "registry" in wanted:
            local_registry = _start_registry(settings, cache, clock, suite).address
        if "issuer" in wanted:
            address = local_registry or settings.registry_address_for("issuer")
            _start_issuer(settings, cache, clock, address, suite)
        if "validator" in wanted:
            address = local_registry or settings.registry_address_for("validator")
            _start_validator(settings, cache, clock, address, suite)
        if PUBLICATION in wanted:
            address = local_registry or settings.registry_address_for("issuer")
            _start_publication(settings, clock, address, suite)
    except BaseException:
        suite.stop()
        raise
    return suite


def serve_metrics_once(settings: Settings) -> str | None:
    """Start the Prometheus endpoint unless it is switched off."""
    if not settings.metrics_listen:
        return None
    serve_metrics(settings.metrics_listen)
    return settings.metrics_listen


# What the registry reads in one request; see UploadCertificates.
REGISTRY_MAX_RECEIVE_BYTES = 32 * 1024 * 1024


def _audit(settings: Settings, service: str, clock: Clock, suite: Suite) -> AuditLog:
    migrate(settings.audit_url, "common")
    database = Database(settings.audit_url)
    suite._closers.append(database.dispose)
    return AuditLog(database, service, clock)


def _start_registry(
    settings: Settings, cache: RevocationCache, clock: Clock, suite: Suite
) -> RunningServer:
    migrate(settings.registry_database_url, "common")
    migrate(settings.registry_database_url, "registry")
    database = Database(settings.registry_database_url)
    suite._closers.append(database.dispose)
    audit = _audit(settings, "registry", clock, suite)
    store = RegistryStore(database, clock, settings.key_policy, audit)

    interval = dt.timedelta(seconds=settings.registry.cache_sync_interval_seconds)
    lease = Lease(
        database,
        LEASE_NAME,
        clock,
        duration=max(interval * 5, dt.timedelta(seconds=10)),
    )
    sync = CacheSync(store, cache, lease)
    sync.start(interval)
    suite._closers.append(sync.stop)

    expiry = open_monitor(database, clock, settings.registry)
    expiry.start(dt.timedelta(seconds=settings.registry.expiry_scan_seconds))
    suite._closers.append(expiry.stop)
    suite.expiry_monitor = expiry

    bus = open_bus(settings.redis_url, settings.registry.watch_max_subscribers)
    suite._streams.append(bus.close)
    heartbeat = dt.timedelta(seconds=settings.registry.watch_heartbeat_seconds)
    watch = RevocationWatch(
        store,
        bus,
        clock,
        WatchLimits(
            heartbeat=heartbeat,
            max_pending=settings.registry.watch_max_pending,
            # A subscriber that took no message for two heartbeats is gone.
            stall_grace=heartbeat * 2,
        ),
    )
    servicer = RegistryServicer(
        store,
        sync,
        bus,
        watch,
        ExpiryRecords(database),
        audit,
    )
    server = start_server(
        "registry",
        settings.registry.listen,
        lambda grpc_server: registry_pb2_grpc.add_RegistryServiceServicer_to_server(
            servicer, grpc_server
        ),
        [REGISTRY_SERVICE],
        # Every watcher holds a thread for as long as it watches; the other
        # calls keep threads of their own.
        max_workers=_RPC_WORKERS + settings.registry.watch_max_subscribers,
        # Uploads above their own 1 MiB limit are refused with a sentence
        # that says so; gRPC's limit must lie beyond it, or a 10 MB file
        # would meet gRPC's terse "message larger than max" first.
        max_receive_bytes=REGISTRY_MAX_RECEIVE_BYTES,
    )
    suite.servers["registry"] = server
    return server


def _start_issuer(
    settings: Settings,
    cache: RevocationCache,
    clock: Clock,
    registry_address: str,
    suite: Suite,
) -> None:
    audit = _audit(settings, "issuer", clock, suite)
    migrate(settings.issuer_database_url, "issuer")
    database = Database(settings.issuer_database_url)
    suite._closers.append(database.dispose)
    signer_context = SignerContext(
        data_dir=settings.data_dir,
        environ=dict(os.environ),
        pkcs11_module_path=settings.issuer.pkcs11_module_path,
    )
    hierarchy = Hierarchy(database, settings.issuer, signer_context, audit, clock)
    suite._closers.append(hierarchy.close)
    # Fail closed: a CA key that cannot be reached stops start-up here.
    hierarchy.ensure_root(SYSTEM_ACTOR)
    hierarchy.open_all()

    channel = open_channel(registry_address)
    suite._closers.append(channel.close)
    registry = RegistryClient(channel)
    crl_store = CrlStore(database)
    publisher = _crl_publisher(
        settings, hierarchy, registry, crl_store, database, clock
    )
    suite.crl_publisher = publisher
    distribution = Distribution(hierarchy, crl_store, clock)
    responder = _ocsp_responder(
        settings, database, hierarchy, registry, clock, suite, renews=True
    )
    issuer = Issuer(
        hierarchy,
        registry,
        cache,
        audit,
        settings.key_policy,
        clock,
        revocation_listeners=[responder.certificate_revoked],
        intermediate_listeners=(
            [suite.ocsp_delegated.intermediate_created]
            if suite.ocsp_delegated is not None
            else []
        ),
    )
    _follow_revocations(settings, channel, responder, suite)
    servicer = IssuerServicer(issuer, registry, distribution)
    suite.servers["issuer"] = start_server(
        "issuer",
        settings.issuer.listen,
        lambda grpc_server: issuer_pb2_grpc.add_IssuerServiceServicer_to_server(
            servicer, grpc_server
        ),
        [ISSUER_SERVICE],
    )
    if settings.issuer.crl_poll_seconds:
        publisher.start(
            dt.timedelta(seconds=settings.issuer.crl_poll_seconds),
            _log_rebuilds,
            lambda error: _log.error(
                "CRL rebuild pass failed; the next pass retries", exc_info=error
            ),
        )
        suite._closers.append(publisher.stop)
    if settings.issuer.publication_listen:
        _start_listener(settings, hierarchy, distribution, responder, clock, suite)


def _start_publication(
    settings: Settings, clock: Clock, registry_address: str, suite: Suite
) -> None:
    """The public HTTP listener alone, beside an issuer: it reads what the
    issuer wrote and signs only OCSP responses (with the responder keys, or
    the intermediates' in "ca" mode, audited), and runs no periodic job."""
    if not settings.issuer.publication_listen:
        raise ConfigError(
            "a publication process serves issuer.publication_listen, which is "
            "switched off (''); set it to host:port"
        )
    audit = _audit(settings, PUBLICATION, clock, suite)
    # The issuer migrates its database; this process only reads it (and
    # would race the issuer's migration at a shared start).
    database = Database(settings.issuer_database_url)
    suite._closers.append(database.dispose)
    signer_context = SignerContext(
        data_dir=settings.data_dir,
        environ=dict(os.environ),
        pkcs11_module_path=settings.issuer.pkcs11_module_path,
    )
    hierarchy = Hierarchy(database, settings.issuer, signer_context, audit, clock)
    suite._closers.append(hierarchy.close)
    try:
        hierarchy.root()
    except (Unavailable, sa.exc.SQLAlchemyError):
        raise ConfigError(
            "the issuer's database holds no platform root yet; start "
            "'tessera serve issuer' (once) before publication processes, and give "
            "both the same issuer.database_url"
        ) from None
    # Fail closed, as the issuer does: a CA key that cannot be reached stops
    # start-up here.
    hierarchy.open_all()

    channel = open_channel(registry_address)
    suite._closers.append(channel.close)
    registry = RegistryClient(channel)
    distribution = Distribution(hierarchy, CrlStore(database), clock)
    responder = _ocsp_responder(
        settings, database, hierarchy, registry, clock, suite, renews=False
    )
    _follow_revocations(settings, channel, responder, suite)
    _start_listener(settings, hierarchy, distribution, responder, clock, suite)


def _follow_revocations(
    settings: Settings, channel: grpc.Channel, responder: OcspResponder, suite: Suite
) -> None:
    """Revocations made through another process (or straight at the
    registry) reach the OCSP responder's memory through the stream."""
    if not settings.issuer.revocation_stream:
        return
    subscriber = RevocationSubscriber(channel, responder, start_behind=0)
    subscriber.start()
    suite._streams.append(subscriber.stop)


def _start_listener(
    settings: Settings,
    hierarchy: Hierarchy,
    distribution: Distribution,
    responder: OcspResponder,
    clock: Clock,
    suite: Suite,
) -> None:
    publication = PublicationServer(
        settings.issuer.publication_listen,
        [
            *ca_certificate_routes(hierarchy),
            *distribution_routes(distribution, clock),
            *ocsp_routes(responder, clock),
        ],
        reuse_port=settings.issuer.publication_shared_port,
    )
    suite.publication = publication.start()
    suite._closers.append(publication.stop)


def _crl_publisher(
    settings: Settings,
    hierarchy: Hierarchy,
    registry: RegistryClient,
    store: CrlStore,
    database: Database,
    clock: Clock,
) -> CrlPublisher:
    issuer = settings.issuer
    schedule = CrlSchedule(
        validity=dt.timedelta(seconds=issuer.crl_validity_seconds),
        refresh=dt.timedelta(seconds=issuer.crl_refresh_seconds),
        coalesce=dt.timedelta(seconds=issuer.crl_coalesce_seconds),
    )
    # A rebuild of a large CRL takes seconds; the lease outlasts several.
    lease = Lease(
        database,
        CRL_LEASE_NAME,
        clock,
        duration=max(dt.timedelta(seconds=issuer.crl_poll_seconds * 5), _CRL_LEASE),
    )
    return CrlPublisher(
        hierarchy.open_all,
        registry,
        store,
        hierarchy,
        hierarchy.urls,
        lease,
        clock,
        schedule,
        lambda authorities, published: _report_crls(authorities, published, clock),
    )


def _log_rebuilds(rebuilds: list[Rebuild]) -> None:
    for rebuild in rebuilds:
        _log.info(
            "CRL published",
            issuer_key_id=rebuild.crl.issuer_key_id,
            frontdoor=rebuild.crl.frontdoor,
            crl_number=rebuild.crl.crl_number,
            entries=rebuild.crl.entry_count,
            covers_sequence=rebuild.crl.revocation_sequence,
            cause=rebuild.cause,
        )


def _report_crls(
    authorities: list[CertificateAuthority],
    published: dict[str, PublishedCrl],
    clock: Clock,
) -> None:
    now = clock.now()
    for authority in authorities:
        crl = published.get(authority.key_id)
        if crl is None:
            continue
        labels = {"frontdoor": crl.frontdoor, "issuer_key_id": crl.issuer_key_id}
        metrics.CRL_SIZE.labels(**labels).set(crl.size)
        metrics.CRL_ENTRIES.labels(**labels).set(crl.entry_count)
        metrics.CRL_AGE.labels(**labels).set((now - crl.this_update).total_seconds())


def _ocsp_responder(
    settings: Settings,
    database: Database,
    hierarchy: Hierarchy,
    registry: RegistryClient,
    clock: Clock,
    suite: Suite,
    renews: bool,
) -> OcspResponder:
    """The OCSP responder, signing as ``issuer.ocsp_signing`` says; with
    ``renews`` (the issuer) it also makes and renews delegated responders."""
    signing: ResponseSigning
    if settings.issuer.ocsp_signing == "ca":
        signing = CaSigning(hierarchy, SYSTEM_ACTOR)
    else:
        lease = None
        if renews:
            # The renewal job's lease lives in the issuer's own database.
            migrate(settings.issuer_database_url, "common")
            lease = Lease(
                database, OCSP_LEASE_NAME, clock, duration=_OCSP_RENEWAL_INTERVAL * 5
            )
        delegated = DelegatedResponders(
            database, hierarchy, settings.issuer, lease, clock, SYSTEM_ACTOR
        )
        if renews:
            # Fail closed, as for CA keys: a key store that cannot make the
            # responder keys stops start-up.
            delegated.renew_due()
            delegated.start(
                _OCSP_RENEWAL_INTERVAL,
                lambda error: _log.warning(
                    "OCSP responder renewal failed; the next pass tries again",
                    error=str(error),
                ),
            )
        suite._closers.append(delegated.stop)
        suite.ocsp_delegated = delegated
        signing = delegated
    shared = RedisPresigned(settings.redis_url) if settings.redis_url else None
    if shared is not None:
        suite._closers.append(shared.close)
    suite.ocsp_responder = OcspResponder(
        hierarchy, registry, signing, clock, settings.issuer, shared
    )
    return suite.ocsp_responder


def _start_validator(
    settings: Settings,
    cache: RevocationCache,
    clock: Clock,
    registry_address: str,
    suite: Suite,
) -> None:
    channel = open_channel(registry_address)
    suite._closers.append(channel.close)
    registry = RegistryClient(channel)
    trust_stores = TrustStores(
        registry,
        dt.timedelta(seconds=settings.validator.trust_store_ttl_seconds),
        clock,
    )
    verdicts = VerdictCache(
        dt.timedelta(seconds=settings.validator.verdict_cache_seconds), clock.now
    )
    streamed = StreamedRevocations()
    revocation = RevocationChecker(
        cache, registry, settings.validator.registry_timeout_seconds, streamed
    )
    if settings.validator.revocation_stream:
        # Resumes from its last sequence after any break.
        subscriber = RevocationSubscriber(
            channel,
            RevocationEvents(streamed, trust_stores, cache, clock, verdicts),
            start_behind=settings.validator.revocation_stream_replay_entries,
        )
        subscriber.start()
        suite._streams.append(subscriber.stop)
        suite.revocation_subscriber = subscriber
    if settings.validator.usage_report_seconds:
        usage = UsageReporter(registry, clock, settings.validator.usage_max_entries)
        usage.start(dt.timedelta(seconds=settings.validator.usage_report_seconds))
        # A stream of sorts: its last report must reach a registry that may
        # stop with this suite, so it ends before the servers.
        suite._streams.append(usage.stop)
        suite.usage_reporter = usage
    # Verdicts are only reused while revocation events can reach them.
    servicer = ValidatorServicer(
        Validator(
            trust_stores,
            revocation,
            clock,
            verdicts if settings.validator.revocation_stream else None,
            suite.usage_reporter,
        )
    )
    suite.servers["validator"] = start_server(
        "validator",
        settings.validator.listen,
        lambda grpc_server: validator_pb2_grpc.add_ValidatorServiceServicer_to_server(
            servicer, grpc_server
        ),
        [VALIDATOR_SERVICE],
    )
