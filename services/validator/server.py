"""gRPC wiring of the validator; the work happens in ``service``."""

from __future__ import annotations

import grpc

from services.validator.service import Validator
from tessera.validator.v1 import validator_pb2, validator_pb2_grpc

SERVICE_NAME = validator_pb2.DESCRIPTOR.services_by_name["ValidatorService"].full_name


class ValidatorServicer(validator_pb2_grpc.ValidatorServiceServicer):
    """Translates ValidatorService calls to the Validator."""

    def __init__(self, validator: Validator) -> None:
        self._validator = validator

    def ValidateCertificate(
        self,
        request: validator_pb2.ValidateCertificateRequest,
        context: grpc.ServicerContext,
    ) -> validator_pb2.ValidationVerdict:
        return self._validator.validate(request.chain, request.frontdoor)
