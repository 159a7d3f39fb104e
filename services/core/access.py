"""Who may call what: caller identities (from client certificates) mapped to roles by a policy
file, and the roles' permissions, enforced for every RPC by one server interceptor.

The policy file (YAML, `--access-policy`, re-read when it changes; an invalid edit keeps the
previous policy, an invalid file at start stops the service):

    callers:
      - id: spiffe://facegate/user/alice        # one identity ...
        roles: [operator]
      - id: spiffe://facegate/*/camera/*         # ... or every identity of a shape (* = one segment)
        roles: [camera]
      - id: spiffe://facegate/integration/hr
        roles: [integration]
        sites: [hq]                               # integration calls limited to these sites
    token_issuers:                                # optional: who may sign bearer tokens (tokens.py)
      - issuer: facegate-console                  # the tokens' `iss`
        public_key_file: console-token.pub        # Ed25519 or P-256 PEM, relative to this file
        subjects: [spiffe://facegate/user/*]      # whom its tokens may name
        max_minutes: 15                           # longest token lifetime it may issue (default 60)

Roles and what they may call are fixed here (`PERMISSIONS`), so a policy file names people and
systems, never RPCs. Per-request limits (a camera streams only as the door its certificate
names, a door controller watches only its door, an integration only its sites) are checked by
the servicers with `caller()`. A caller with a valid certificate that the policy does not name
is UNAUTHENTICATED; a named caller without the role is PERMISSION_DENIED, with a message naming
the permission it lacks. The health check is open to every certificate holder.

A call may instead carry a bearer token (`authorization: Bearer <JWT>`, see `tokens.py`): on
the token port (`--token-port`: TLS without client certificates) it is the only credential; on
the mutual-TLS port it speaks for someone other than the certificate's holder (a console acting
for the person logged in), and the caller is recorded as "<subject> via <certificate id>".
"""

from __future__ import annotations

import contextvars
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import yaml

from services.core.admission import Admission, Refused
from services.core.tokens import Issuer, TokenError, load_public_key, verify

log = logging.getLogger("facegate.access")

ROLES = ("service", "camera", "door-controller", "operator", "integration", "auditor")
# full method name -> roles that may call it
PERMISSIONS: dict[str, frozenset[str]] = {
    "/facegate.v1.Detector/Detect": frozenset({"service", "operator"}),
    "/facegate.v1.Embedder/Embed": frozenset({"service", "operator"}),
    "/facegate.v1.Embedder/GetModel": frozenset({"service", "operator", "integration", "auditor"}),
    "/facegate.v1.Matcher/Enroll": frozenset({"service", "operator"}),
    "/facegate.v1.Matcher/Identify": frozenset({"service", "operator", "integration"}),
    "/facegate.v1.Matcher/Verify": frozenset({"service", "operator", "integration"}),
    "/facegate.v1.Matcher/DeleteIdentity": frozenset({"service", "operator"}),
    "/facegate.v1.Matcher/GetIdentity": frozenset({"service", "operator"}),
    "/facegate.v1.Matcher/ListIdentities": frozenset({"service", "operator"}),
    "/facegate.v1.Matcher/ExportIdentities": frozenset({"operator"}),
    "/facegate.v1.Matcher/Cluster": frozenset({"service", "operator"}),  # the gateway groups review faces
    "/facegate.v1.Gateway/StreamCamera": frozenset({"camera"}),
    "/facegate.v1.Gateway/EnrollFromImages": frozenset({"operator"}),
    "/facegate.v1.Gateway/WatchDecisions": frozenset({"door-controller", "operator", "auditor"}),
    "/facegate.v1.Gateway/ListDecisions": frozenset({"operator", "auditor"}),
    "/facegate.v1.Gateway/EraseIdentity": frozenset({"operator"}),
    "/facegate.v1.Gateway/ListAdminActions": frozenset({"operator", "auditor"}),
    "/facegate.v1.Gateway/ListDoors": frozenset({"operator", "auditor"}),
    "/facegate.v1.Gateway/ListReviews": frozenset({"operator"}),
    "/facegate.v1.Gateway/AnswerReview": frozenset({"operator"}),
    "/facegate.v1.Gateway/AddReviewTemplate": frozenset({"operator"}),
    "/facegate.v1.Gateway/ClusterReviews": frozenset({"operator"}),
    # only served with --reflection
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": frozenset({"operator"}),
}
OPEN = ("/grpc.health.v1.Health/",)  # any certificate holder
ID_SHAPE = re.compile(r"spiffe://facegate(/([A-Za-z0-9._-]{1,64}|\*)){2,3}")
PER_DOOR = re.compile(r"spiffe://facegate/(?P<site>[A-Za-z0-9._-]+)/(?P<kind>camera|door-controller)/(?P<door>[^/]+)")


class PolicyError(ValueError):
    """The access policy file is not valid (the message names the field)."""


@dataclass(frozen=True)
class Caller:
    """Who is calling, and what the policy lets them do."""

    identity: str
    roles: frozenset[str] = frozenset()
    sites: tuple[str, ...] = ()  # integration: only these sites (empty: all)
    via: str = ""  # the certificate that presented a bearer token for `identity` ("" = none)

    def describe(self) -> str:
        """Who, for logs and the admin log."""
        return f"{self.identity} via {self.via}" if self.via else self.identity

    @property
    def door(self) -> tuple[str, str] | None:
        """(site, door) a camera's or door controller's certificate names."""
        match = PER_DOOR.fullmatch(self.identity)
        return (match["site"], match["door"]) if match else None


@dataclass(frozen=True)
class Rule:
    pattern: re.Pattern[str]
    roles: frozenset[str]
    sites: tuple[str, ...]


@dataclass
class AccessPolicy:
    rules: list[Rule] = field(default_factory=list)
    issuers: dict[str, Issuer] = field(default_factory=dict)  # bearer-token issuers by `iss`

    def caller(self, identity: str) -> Caller | None:
        """The first rule naming `identity`, or None (not a caller this policy knows)."""
        for rule in self.rules:
            if rule.pattern.fullmatch(identity):
                return Caller(identity, rule.roles, rule.sites)
        return None


def _pattern(identity: str) -> re.Pattern[str]:
    """An identity of the policy (`*` = one path segment) as a pattern to match whole."""
    return re.compile("/".join(re.escape(part) if part != "*" else "[A-Za-z0-9._-]{1,64}"
                               for part in identity.split("/")))


def parse_policy(data: Any, source: str = "", base: Path | None = None) -> AccessPolicy:
    """The policy in `data` (parsed YAML); key files are relative to `base` (the policy's folder)."""
    if not isinstance(data, dict) or set(data) - {"callers", "token_issuers"}:
        raise PolicyError(f"{source}: a mapping with the keys callers and optionally token_issuers")
    callers = data.get("callers") or []
    if not isinstance(callers, list):
        raise PolicyError("callers: a list of {id, roles[, sites]}")
    rules = []
    for i, entry in enumerate(callers):
        where = f"callers[{i}]"
        if not isinstance(entry, dict) or set(entry) - {"id", "roles", "sites"} or "id" not in entry:
            raise PolicyError(f"{where}: a mapping with id, roles and optionally sites")
        identity = entry["id"]
        if not isinstance(identity, str) or not ID_SHAPE.fullmatch(identity):
            raise PolicyError(f"{where}.id: {identity!r}; a SPIFFE id like spiffe://facegate/user/alice "
                              "(* stands for one path segment)")
        roles = entry.get("roles")
        if not isinstance(roles, list) or not roles or any(r not in ROLES for r in roles):
            raise PolicyError(f"{where}.roles: {roles!r}; a list of {', '.join(ROLES)}")
        sites = entry.get("sites") or []
        if not isinstance(sites, list) or not all(isinstance(s, str) and s for s in sites):
            raise PolicyError(f"{where}.sites: {sites!r}; a list of site names")
        rules.append(Rule(_pattern(identity), frozenset(roles), tuple(sites)))
    return AccessPolicy(rules, parse_issuers(data.get("token_issuers") or [], base or Path(".")))


def parse_issuers(entries: Any, base: Path) -> dict[str, Issuer]:
    """The policy's `token_issuers`, by name, each checked (its key file read, relative to `base`)."""
    if not isinstance(entries, list):
        raise PolicyError("token_issuers: a list of {issuer, public_key_file, subjects[, max_minutes]}")
    issuers: dict[str, Issuer] = {}
    for i, entry in enumerate(entries):
        where = f"token_issuers[{i}]"
        required = {"issuer", "public_key_file", "subjects"}
        if not isinstance(entry, dict) or set(entry) - required - {"max_minutes"} or not required <= set(entry):
            raise PolicyError(f"{where}: a mapping with issuer, public_key_file, subjects and optionally max_minutes")
        name = entry["issuer"]
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9._:/-]{1,128}", name) or name in issuers:
            raise PolicyError(f"{where}.issuer: {name!r}; a unique name of 1-128 letters, digits or ._:/-")
        subjects = entry["subjects"]
        if not isinstance(subjects, list) or not subjects or \
                not all(isinstance(s, str) and ID_SHAPE.fullmatch(s) for s in subjects):
            raise PolicyError(f"{where}.subjects: {subjects!r}; a list of SPIFFE ids (* = one path segment)")
        minutes = entry.get("max_minutes", 60)
        if not isinstance(minutes, int) or isinstance(minutes, bool) or not 1 <= minutes <= 1440:
            raise PolicyError(f"{where}.max_minutes: {minutes!r}; 1-1440 (tokens should be short-lived)")
        try:
            key = load_public_key(base / str(entry["public_key_file"]))
        except TokenError as exc:
            raise PolicyError(f"{where}.public_key_file: {exc}") from None
        issuers[name] = Issuer(name, key, tuple(_pattern(s) for s in subjects), minutes)
    return issuers


def load_policy(path: Path) -> AccessPolicy:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path}: not valid YAML ({exc})") from exc
    try:
        return parse_policy(data, str(path), path.parent)
    except PolicyError as exc:
        raise PolicyError(f"{path}: {exc}") from None


_caller: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("facegate_caller", default=None)


def caller() -> Caller | None:
    """The caller of the RPC being served (None on a plaintext, --insecure server)."""
    return _caller.get()


class PolicyFile:
    """The policy, re-read when its file changes (at most every `reload_seconds`). Issuers' key
    files are read with it: a replaced key file counts once the policy file changes too (rotate
    an issuer's key by listing the new one as another issuer, then dropping the old)."""

    def __init__(self, path: Path, reload_seconds: float = 2.0) -> None:
        self._path, self._reload_seconds = path, reload_seconds
        self._mtime = path.stat().st_mtime if path.exists() else 0.0
        self.policy = load_policy(path)  # invalid at start: the service does not start
        self._checked = time.monotonic()

    def current(self) -> AccessPolicy:
        now = time.monotonic()
        if now - self._checked >= self._reload_seconds:
            self._checked = now
            try:
                mtime = self._path.stat().st_mtime
                if mtime != self._mtime:
                    self.policy, self._mtime = load_policy(self._path), mtime
                    log.info("access policy reloaded", extra={"fields": {"path": str(self._path)}})
            except (OSError, PolicyError) as exc:
                log.error("access policy not reloaded, keeping the previous one: %s", exc)
        return self.policy


NOT_BEARER = "\0"  # an authorization header of another scheme: refused, with the format to use


def bearer_token(context: grpc.aio.ServicerContext) -> str | None:
    """The token of an `authorization: Bearer <token>` header, if the call has one."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            text = value if isinstance(value, str) else value.decode("latin-1")
            scheme, _, token = text.partition(" ")
            return token.strip() if scheme.lower() == "bearer" else NOT_BEARER
    return None


def who_called(context: grpc.aio.ServicerContext) -> str:
    """The caller as the admin log records it (the peer's address on a plaintext server)."""
    known = caller()
    return known.describe() if known else str(context.peer())


class Authorize(grpc.aio.ServerInterceptor):
    """Every RPC: the caller's identity from its certificate (or token), its roles from the
    policy, the method's permission, the caller's limits (`admission.py`); the caller is then
    available to the servicer as `caller()`."""

    def __init__(self, policy: PolicyFile, admission: Admission | None = None) -> None:
        self._policy, self._admission = policy, admission

    async def _check(self, context: grpc.aio.ServicerContext, method: str) -> Caller | None:
        values = (context.auth_context() or {}).get("peer_spiffe_id") or [b""]
        identity = values[0].decode("utf-8", "replace")
        if method.startswith(OPEN):
            return Caller(identity)
        policy = self._policy.current()
        token = bearer_token(context)
        if token is not None:  # it speaks for its subject, whoever presents it
            try:
                if token == NOT_BEARER:
                    raise TokenError("the authorization header must be 'Bearer <token>'")
                claims = verify(token, policy.issuers, ROLES)
            except TokenError as exc:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"bearer token refused: {exc}")
            named = policy.caller(claims.subject)
            if named is None:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                    f"{claims.subject} (bearer token subject) is not in the access policy")
            assert named is not None
            known: Caller | None = Caller(claims.subject, named.roles & claims.scopes, named.sites, via=identity)
        elif identity:
            known = policy.caller(identity)
            if known is None:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"{identity} is not in the access policy")
        else:  # the token port: no client certificate
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "no client certificate and no bearer token: send metadata "
                                "'authorization: Bearer <token>' (see `facegate tokens issue`)")
        assert known is not None
        allowed = PERMISSIONS.get(method, frozenset())
        if not known.roles & allowed:
            needs = " or ".join(sorted(allowed)) or "a role no caller has"
            roles = ", ".join(sorted(known.roles)) or "none"
            scoped = " as narrowed by its token's scope" if token is not None else ""
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"{known.describe()} (roles: {roles}{scoped}) may not call "
                                f"{method.rsplit('/', 1)[-1]}: it needs the {needs} role")
        return known

    async def _admit(self, context: grpc.aio.ServicerContext, method: str) -> Caller | None:
        """The authorised caller, counted against its rate."""
        known = await self._check(context, method)
        if known is not None and self._admission is not None and not method.startswith(OPEN):
            try:
                await self._admission.admit(known.identity, known.roles, method)
            except Refused as exc:
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        return known

    async def _take_slot(self, context: grpc.aio.ServicerContext, known: Caller | None, method: str) -> None:
        """One of the caller's stream slots for this call, given back when the call ends however
        it ends (a client's cancel included: gRPC runs the done callback, where a `finally` in a
        generator nobody closes would wait for the garbage collector)."""
        if known is None or self._admission is None or method.startswith(OPEN):
            return
        admission, identity, roles = self._admission, known.identity, known.roles
        try:
            admission.open_stream(identity, roles)
        except Refused as exc:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        context.add_done_callback(lambda _: admission.close_stream(identity, roles))

    async def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
                                details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        if handler is None:
            return None
        method: str = details.method
        for kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
            behaviour = getattr(handler, kind)
            if behaviour is not None:
                wrapped = self._guarded(behaviour, method, kind)
                factory = getattr(grpc, f"{kind}_rpc_method_handler")
                return factory(wrapped, handler.request_deserializer, handler.response_serializer)
        return handler

    def _guarded(self, behaviour: Callable[..., Any], method: str, kind: str) -> Callable[..., Any]:
        """`behaviour`, run only for an authorised caller within its limits, with `caller()` set
        for it; a streaming call holds one of the caller's stream slots while it is open."""
        if kind.endswith("_stream"):
            async def stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
                known = await self._admit(context, method)
                _caller.set(known)
                await self._take_slot(context, known, method)
                async for item in behaviour(request, context):
                    yield item

            return stream

        streaming_in = kind == "stream_unary"

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            known = await self._admit(context, method)
            _caller.set(known)
            if streaming_in:
                await self._take_slot(context, known, method)
            return await behaviour(request, context)

        return unary
