"""gRPC plumbing every service shares.

- The server side: one interceptor maps Tessera's error model to gRPC status
  codes (DESIGN, "API conventions"), binds a request id to the logs, and
  times every call; ``start_server`` adds health checking and reflection.
- The client side: channels that pass the request id on, and the mapping of
  a remote status back into the error model, so a NOT_FOUND from the
  registry stays NOT_FOUND when the issuer passes it on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from typing import Any

import grpc
import structlog
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status

from services.common import metrics
from services.common.config import ConfigError
from services.common.errors import (
    ERROR_CLASSES,
    ErrorKind,
    RemoteInternal,
    TesseraError,
    Unavailable,
)
from services.common.logging import get_logger

_log = get_logger(__name__)

REQUEST_ID_HEADER = "x-request-id"
# Who the caller says they are. Development mode has no authentication, so
# audit entries record it as a claim next to the peer address.
ACTOR_HEADER = "tessera-actor"
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
# Status messages travel in metadata, which gRPC caps at 16 KiB; messages
# that quote a caller's input are cut well below that.
MAX_STATUS_MESSAGE = 1024

_STATUS_CODES: dict[ErrorKind, grpc.StatusCode] = {
    ErrorKind.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorKind.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    ErrorKind.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorKind.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    ErrorKind.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorKind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorKind.INTERNAL: grpc.StatusCode.INTERNAL,
}
_ERROR_KINDS = {code: kind for kind, code in _STATUS_CODES.items()}
_ERROR_KINDS[grpc.StatusCode.DEADLINE_EXCEEDED] = ErrorKind.UNAVAILABLE


def error_status(error: TesseraError) -> grpc.Status:
    """The gRPC status (with google.rpc.Status details) for an error."""
    code = _STATUS_CODES[error.kind]
    details = []
    for detail in error.details:
        if isinstance(detail, any_pb2.Any):
            details.append(detail)
        else:
            packed = any_pb2.Any()
            packed.Pack(detail)
            details.append(packed)
    message = error.message
    if len(message) > MAX_STATUS_MESSAGE:
        message = message[: MAX_STATUS_MESSAGE - 1] + "…"
    status = status_pb2.Status(
        code=getattr(code_pb2, code.name), message=message, details=details
    )
    return rpc_status.to_status(status)


def caller_identity(context: grpc.ServicerContext) -> str:
    """Who is calling, as audit entries record it."""
    claimed = _metadata(context).get(ACTOR_HEADER, "anonymous")[:100]
    return f"{claimed} (unauthenticated, {context.peer()})"


def _metadata(context: grpc.ServicerContext) -> dict[str, str]:
    return {
        key: value
        for key, value in (context.invocation_metadata() or ())
        if isinstance(value, str)
    }


# grpc's classes are generic in grpc-stubs only, not at run time.
class ErrorMappingInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """Maps exceptions to statuses, binds a request id and times each call."""

    def __init__(self, service: str) -> None:
        self._service = service

    def intercept_service(
        self, continuation: Callable[[Any], Any], handler_call_details: Any
    ) -> Any:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(handler.unary_stream, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    def _unary(self, behaviour: Callable[[Any, Any], Any], method: str) -> Any:
        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            with self._call(method, context):
                return behaviour(request, context)

        return handle

    def _streaming(self, behaviour: Callable[[Any, Any], Any], method: str) -> Any:
        def handle(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            with self._call(method, context):
                yield from behaviour(request, context)

        return handle

    @contextlib.contextmanager
    def _call(self, method: str, context: grpc.ServicerContext) -> Iterator[None]:
        request_id = _metadata(context).get(REQUEST_ID_HEADER) or uuid.uuid4().hex
        request_id = request_id[:64]
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        with structlog.contextvars.bound_contextvars(
            request_id=request_id, rpc=method, service=self._service
        ):
            try:
                yield
            except TesseraError as error:
                status = error_status(error)
                code = status.code
                log = _log.error if error.kind is ErrorKind.INTERNAL else _log.info
                log("request refused", code=code.name, reason=error.message)
                context.abort_with_status(status)
            except Exception:
                code = grpc.StatusCode.INTERNAL
                _log.exception("unexpected error while serving a request")
                context.abort(
                    code,
                    f"internal error (request id {request_id}); "
                    "the service log has the detail",
                )
            finally:
                metrics.RPC_DURATION.labels(
                    service=self._service, method=method, code=code.name
                ).observe(time.perf_counter() - started)


@dataclasses.dataclass
class RunningServer:
    """A started gRPC server and the address it listens on."""

    server: grpc.Server
    address: str
    health: health.HealthServicer

    def stop(self, grace_seconds: float = 2.0) -> None:
        self.health.enter_graceful_shutdown()
        self.server.stop(grace_seconds).wait()


def start_server(
    service: str,
    listen: str,
    register: Callable[[grpc.Server], None],
    service_names: Sequence[str],
    max_workers: int = 32,
    max_receive_bytes: int = MAX_MESSAGE_BYTES,
) -> RunningServer:
    """Start a server with ``register``'s servicers, health and reflection.

    ``listen`` may use port 0; the returned address carries the real port.
    """
    server = grpc.server(
        futures.ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix=f"{service}-rpc"
        ),
        interceptors=[ErrorMappingInterceptor(service)],
        options=[
            ("grpc.max_receive_message_length", max_receive_bytes),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
    )
    register(server)

    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", *service_names):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )

    try:
        port = server.add_insecure_port(listen)
    except RuntimeError:
        port = 0
    if port == 0:
        raise ConfigError(
            f"the {service} cannot listen on {listen}: the address is taken or not "
            f"this machine's; stop what uses it or set {service}.listen "
            f"(TESSERA_{service.upper()}__LISTEN) to another host:port"
        )
    server.start()
    host = listen.rsplit(":", 1)[0]
    return RunningServer(
        server=server, address=f"{host}:{port}", health=health_servicer
    )


# Client side ------------------------------------------------------------


class _RequestIdInterceptor(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[type-arg]
):
    """Passes the current request id (and actor) on to the next service."""

    def __init__(self, actor: str | None) -> None:
        self._actor = actor

    def _with_metadata(self, details: Any) -> Any:
        metadata = list(details.metadata or ())
        request_id = structlog.contextvars.get_contextvars().get("request_id")
        if request_id:
            metadata.append((REQUEST_ID_HEADER, request_id))
        if self._actor:
            metadata.append((ACTOR_HEADER, self._actor))
        return _CallDetails(
            details.method,
            details.timeout,
            tuple(metadata),
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(
        self, continuation: Any, details: Any, request: Any
    ) -> Any:
        return continuation(self._with_metadata(details), request)

    def intercept_unary_stream(
        self, continuation: Any, details: Any, request: Any
    ) -> Any:
        return continuation(self._with_metadata(details), request)


@dataclasses.dataclass(frozen=True)
class _CallDetails(grpc.ClientCallDetails):
    method: str
    timeout: float | None
    metadata: tuple[tuple[str, str | bytes], ...] | None
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: grpc.Compression | None


def open_channel(address: str, actor: str | None = None) -> grpc.Channel:
    """A channel to another Tessera service (development mode: plaintext)."""
    channel = grpc.insecure_channel(
        address,
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            # gRPC's own reconnect backoff grows to two minutes by default;
            # a restarted registry should find its watchers back in seconds.
            # The minimum backoff is left at gRPC's default: gRPC also uses
            # it as the time one connection attempt may take, and at 100 ms
            # a busy machine made calls fail as unreachable.
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 5000),
        ],
    )
    return grpc.intercept_channel(channel, _RequestIdInterceptor(actor))


def remote_error(error: grpc.RpcError, service: str) -> TesseraError:
    """The error model's view of a failed call to another service."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    message = (error.details() if hasattr(error, "details") else "") or str(code)
    kind = _ERROR_KINDS.get(code)
    if kind is ErrorKind.UNAVAILABLE:
        return Unavailable(f"the {service} cannot be reached right now: {message}")
    if kind is None or kind is ErrorKind.INTERNAL:
        return RemoteInternal(f"the {service} failed: {message}")
    details: list[Message] = []
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is not None:
        details.extend(status.details)
    return ERROR_CLASSES[kind](message, details)


@contextlib.contextmanager
def calling(service: str) -> Iterator[None]:
    """Turn a failed call to ``service`` into the matching TesseraError."""
    try:
        yield
    except grpc.RpcError as error:
        raise remote_error(error, service) from None
