"""gRPC wiring of the issuer; the work happens in ``service``."""

from __future__ import annotations

import grpc

from services.common.rpc import caller_identity
from services.issuer.distribution import Distribution
from services.issuer.service import Issuer
from services.registry.client import RegistryClient
from tessera.common.v1 import common_pb2
from tessera.issuer.v1 import issuer_pb2, issuer_pb2_grpc

SERVICE_NAME = issuer_pb2.DESCRIPTOR.services_by_name["IssuerService"].full_name


class IssuerServicer(issuer_pb2_grpc.IssuerServiceServicer):
    """Translates IssuerService calls to the Issuer."""

    def __init__(
        self, issuer: Issuer, registry: RegistryClient, distribution: Distribution
    ) -> None:
        self._issuer = issuer
        self._registry = registry
        self._distribution = distribution

    def CreateFrontdoor(
        self, request: issuer_pb2.CreateFrontdoorRequest, context: grpc.ServicerContext
    ) -> common_pb2.Frontdoor:
        return self._issuer.create_frontdoor(
            request.name, request.settings, caller_identity(context)
        )

    def GetFrontdoor(
        self, request: issuer_pb2.GetFrontdoorRequest, context: grpc.ServicerContext
    ) -> common_pb2.Frontdoor:
        return self._registry.get_frontdoor(request.name)

    def ListFrontdoors(
        self, request: issuer_pb2.ListFrontdoorsRequest, context: grpc.ServicerContext
    ) -> issuer_pb2.ListFrontdoorsResponse:
        return issuer_pb2.ListFrontdoorsResponse(
            frontdoors=self._registry.list_frontdoors()
        )

    def UpdateFrontdoor(
        self, request: issuer_pb2.UpdateFrontdoorRequest, context: grpc.ServicerContext
    ) -> common_pb2.Frontdoor:
        return self._issuer.update_frontdoor(
            request.name,
            request.settings,
            request.update_mask,
            caller_identity(context),
        )

    def GetPlatformRoot(
        self, request: issuer_pb2.GetPlatformRootRequest, context: grpc.ServicerContext
    ) -> common_pb2.CaCertificate:
        return self._issuer.platform_root()

    def IssueCertificate(
        self,
        request: issuer_pb2.IssueCertificateRequest,
        context: grpc.ServicerContext,
    ) -> issuer_pb2.IssueCertificateResponse:
        return self._issuer.issue_certificate(request, caller_identity(context))

    def RevokeCertificate(
        self,
        request: issuer_pb2.RevokeCertificateRequest,
        context: grpc.ServicerContext,
    ) -> common_pb2.Revocation:
        return self._issuer.revoke_certificate(request, caller_identity(context))

    def GetCrl(
        self, request: issuer_pb2.GetCrlRequest, context: grpc.ServicerContext
    ) -> issuer_pb2.Crl:
        return self._distribution.crl_message(request.key_id)

    def GetTrustBundle(
        self,
        request: issuer_pb2.GetTrustBundleRequest,
        context: grpc.ServicerContext,
    ) -> issuer_pb2.TrustBundle:
        return self._distribution.trust_bundle_message(request.frontdoor)
