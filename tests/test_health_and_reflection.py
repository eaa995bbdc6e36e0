"""Every service answers gRPC health checks and reflection."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from services.suite import Suite

_EXPECTED = {
    "issuer": "tessera.issuer.v1.IssuerService",
    "registry": "tessera.registry.v1.RegistryService",
    "validator": "tessera.validator.v1.ValidatorService",
}


@pytest.mark.parametrize("service", sorted(_EXPECTED))
def test_service_is_healthy_and_reflects_its_api(suite: Suite, service: str) -> None:
    with grpc.insecure_channel(suite.address(service)) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=_EXPECTED[service]), timeout=5
        )
        responses = reflection_pb2_grpc.ServerReflectionStub(
            channel
        ).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
            timeout=5,
        )
        names = {
            service_response.name
            for response in responses
            for service_response in response.list_services_response.service
        }

    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert _EXPECTED[service] in names
    assert "grpc.health.v1.Health" in names
