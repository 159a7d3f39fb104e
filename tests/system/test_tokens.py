"""Bearer tokens on the real services: the token port takes callers without a client
certificate, the same interceptor decides what they may do, and a token presented over mutual
TLS speaks for its subject, recorded as "<subject> via <certificate>"."""

from __future__ import annotations

import time

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from facegate import tokens
from facegate.harness.pki import TOKEN_ISSUER, default_pki
from services.contracts.v1 import gateway_pb2, gateway_pb2_grpc, matcher_pb2, matcher_pb2_grpc
from services.core.channels import blocking_channel
from services.core.tokens import AUDIENCE

ADMIN, HR = "spiffe://facegate/user/admin", "spiffe://facegate/integration/hr"


def token_channel(address: str, token: str | None) -> grpc.Channel:
    """TLS trusting the local CA, no client certificate; the token (if any) on every call."""
    pki = default_pki()
    if token is None:
        return grpc.secure_channel(address, grpc.ssl_channel_credentials(pki.ca_file.read_bytes()))
    return blocking_channel(address, None, token=token, ca_file=pki.ca_file)


def refused(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def test__an_operator_token_on_the_token_port_reads_the_admin_log(stack):
    token = default_pki().token(ADMIN, ["operator"])
    gateway = gateway_pb2_grpc.GatewayStub(token_channel(stack.services["gateway"].token_address, token))

    reply = gateway.ListAdminActions(gateway_pb2.ListAdminActionsRequest(limit=1), timeout=10)

    assert isinstance(reply, gateway_pb2.ListAdminActionsResponse)


def test__the_token_port_without_a_token_is_unauthenticated_and_says_what_to_send(stack):
    gateway = gateway_pb2_grpc.GatewayStub(token_channel(stack.services["gateway"].token_address, None))

    error = refused(lambda: gateway.ListAdminActions(gateway_pb2.ListAdminActionsRequest(limit=1), timeout=10))

    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "authorization: Bearer" in error.details()


def test__an_expired_or_foreign_token_is_unauthenticated(stack, tmp_path):
    pki = default_pki()
    key = serialization.load_pem_private_key((pki.root / "tokens" / tokens.KEY).read_bytes(), password=None)
    an_hour_ago = int(time.time()) - 3600
    expired = jwt.encode({"iss": TOKEN_ISSUER, "sub": ADMIN, "aud": AUDIENCE, "iat": an_hour_ago,
                          "exp": an_hour_ago + 600, "scope": "operator"}, key, algorithm="EdDSA")
    tokens.keygen(tmp_path)
    foreign = tokens.issue(tmp_path / tokens.KEY, TOKEN_ISSUER, ADMIN, ["operator"], 15)

    for token, reason in ((expired, "expired"), (foreign, "Signature verification failed")):
        gateway = gateway_pb2_grpc.GatewayStub(token_channel(stack.services["gateway"].token_address, token))
        error = refused(lambda g=gateway: g.ListAdminActions(gateway_pb2.ListAdminActionsRequest(limit=1), timeout=10))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED and reason in error.details()


def test__a_token_narrows_its_subjects_roles_to_its_scope(stack):
    """admin is operator and auditor in the policy; an auditor-scoped token of admin cannot enrol."""
    token = default_pki().token(ADMIN, ["auditor"])
    gateway = gateway_pb2_grpc.GatewayStub(token_channel(stack.services["gateway"].token_address, token))

    error = refused(lambda: gateway.EnrollFromImages(gateway_pb2.EnrollFromImagesRequest(identity_id="x"),
                                                     timeout=10))

    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "narrowed by its token's scope" in error.details() and "needs the operator role" in error.details()


def test__a_token_never_grants_more_than_the_policy_gives_its_subject(stack):
    """The harness policy makes integration/hr an integration only: an operator-scoped token for it
    still cannot export the gallery."""
    token = default_pki().token(HR, ["operator"])
    matcher = matcher_pb2_grpc.MatcherStub(token_channel(stack.services["matcher"].token_address, token))

    error = refused(lambda: list(matcher.ExportIdentities(matcher_pb2.ExportIdentitiesRequest(), timeout=10)))

    assert error.code() == grpc.StatusCode.PERMISSION_DENIED and "roles: none" in error.details()


def test__an_integration_token_identifies_on_the_matcher(stack):
    token = default_pki().token(HR, ["integration"])
    matcher = matcher_pb2_grpc.MatcherStub(token_channel(stack.services["matcher"].token_address, token))

    error = refused(lambda: matcher.Identify(matcher_pb2.IdentifyRequest(), timeout=10))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT  # past the access check, to the request's own


def test__a_token_over_mutual_tls_is_recorded_as_its_subject_via_the_certificate(stack):
    """A console holds a service certificate and acts for the person logged in."""
    pki = default_pki()
    console = pki.service("console")
    token = pki.token(ADMIN, ["operator"])
    gateway = gateway_pb2_grpc.GatewayStub(blocking_channel(stack.address("gateway"), console, token=token))
    admin = gateway_pb2_grpc.GatewayStub(blocking_channel(stack.address("gateway"), pki.user()))

    reply = gateway.EraseIdentity(gateway_pb2.EraseIdentityRequest(identity_id="token-erase-probe",
                                                                   reason="token test"), timeout=20)

    actions = admin.ListAdminActions(gateway_pb2.ListAdminActionsRequest(limit=20), timeout=10).actions
    mine = [a for a in actions if a.subject == "token-erase-probe"]
    assert reply.templates_removed == 0 and mine
    assert mine[0].caller == f"{ADMIN} via spiffe://facegate/service/console"


def test__an_authorization_header_of_another_scheme_is_refused_with_the_format_to_use(stack):
    gateway = gateway_pb2_grpc.GatewayStub(token_channel(stack.services["gateway"].token_address, None))

    error = refused(lambda: gateway.ListAdminActions(gateway_pb2.ListAdminActionsRequest(limit=1), timeout=10,
                                                     metadata=(("authorization", "Basic YWRtaW46YWRtaW4="),)))

    assert error.code() == grpc.StatusCode.UNAUTHENTICATED and "'Bearer <token>'" in error.details()
