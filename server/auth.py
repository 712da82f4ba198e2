"""Authentication, per the MCP authorization spec (this server is an OAuth resource server).

The SDK does the protocol: `BearerAuthBackend` checks each request's bearer token with our
`TokenVerifier` and its audience (`AuthSettings(validate_token_resource=True)`), the protected
resource metadata (RFC 9728) names the authorization server, and `RequireAuthMiddleware`
answers 401 / 403 `insufficient_scope`. This module supplies what is ours:

- `StaticTokenVerifier`: bearer tokens from the settings, stored as SHA-256 hashes, each with a
  caller id and scopes (`mcp-jobs token` makes one). For small deployments.
- `JwtVerifier`: JWT access tokens checked against the issuer's JWKS with PyJWT: signature,
  expiry, issuer, audience equal to this server's resource URL, scopes (`scope` or `scp`).
- `ScopeChallenges`: an ASGI wrapper that adds `scope="..."` to the SDK's challenges (it omits
  it) and refuses a `tools/call` of a job that requires scopes the token lacks with 403
  `insufficient_scope`, naming them, before anything is queued.

The caller a job is recorded under is the token's subject (JWT `sub`) or its client id.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import anyio.to_thread
import jwt
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.routes import build_resource_metadata_url
from mcp.server.auth.settings import AuthSettings
from pydantic import AnyHttpUrl

from mcp_jobs.registry import JobSpec
from mcp_jobs.settings import Settings

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def hash_token(token: str) -> str:
    """The SHA-256 hex digest under which a static token is configured."""
    return hashlib.sha256(token.encode()).hexdigest()


class StaticTokenVerifier(TokenVerifier):
    """Bearer tokens configured as hashes (`MCP_JOBS_AUTH_TOKENS`), never stored in the clear."""

    def __init__(self, settings: Settings) -> None:
        self._tokens = {entry.sha256.lower(): entry for entry in settings.auth_tokens}
        self._resource = settings.resource_url

    async def verify_token(self, token: str) -> AccessToken | None:
        digest = hash_token(token)
        for known, entry in self._tokens.items():
            if hmac.compare_digest(known, digest):
                return AccessToken(
                    token=token,
                    client_id=entry.caller,
                    subject=entry.caller,
                    scopes=list(entry.scopes),
                    resource=self._resource,
                )
        return None


class JwtVerifier(TokenVerifier):
    """JWT access tokens signed by the issuer's keys (fetched from its JWKS and cached)."""

    def __init__(self, settings: Settings) -> None:
        assert settings.auth_jwks_url is not None
        # The JWK set is cached for `auth_jwks_lifespan`; no per-key cache (`cache_keys`), which
        # would keep a key removed from the set for as long as the process lives. An unknown key id
        # refetches the set at most once per cooldown (no more than the lifespan), so tokens with
        # made-up key ids cannot make this server hammer the issuer.
        lifespan = settings.auth_jwks_lifespan
        self._jwks = jwt.PyJWKClient(
            settings.auth_jwks_url,
            cache_keys=False,
            lifespan=lifespan,
            cooldown_duration=min(30.0, lifespan),
            timeout=10,
        )
        self._issuer = settings.auth_issuer_url
        self._audience = settings.resource_url
        self._algorithms = settings.auth_algorithms

    async def verify_token(self, token: str) -> AccessToken | None:
        """The token's access, or None (a 401): for any token that does not verify, however
        malformed, with one log line that names why and never the token."""
        try:
            key = await anyio.to_thread.run_sync(self._jwks.get_signing_key_from_jwt, token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=_algorithms_for(key.key, self._algorithms),
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "sub"]},
            )
            return AccessToken(
                token=token,
                client_id=str(claims.get("client_id") or claims.get("azp") or claims["sub"]),
                subject=str(claims["sub"]),
                scopes=_scopes(claims),
                expires_at=int(claims["exp"]),
                resource=self._audience,
                claims={"iss": claims.get("iss")},
            )
        except jwt.PyJWKClientConnectionError as exc:
            # The issuer's JWKS is out of reach: no token can be verified, which is the caller's
            # 401 (it may retry), and the operator's warning.
            logger.warning("bearer token refused: the JWKS cannot be fetched (%s)", type(exc).__name__)
            return None
        except (jwt.PyJWTError, TypeError, ValueError) as exc:
            logger.info("bearer token refused: %s", type(exc).__name__)  # never the token itself
            return None


def _scopes(claims: dict[str, Any]) -> list[str]:
    """The token's scopes: `scope` as space-separated text (RFC 9068), or a `scp` list as some
    issuers write it; anything else makes the token malformed (a 401, not a 500)."""
    scopes = claims.get("scope", claims.get("scp", []))
    if isinstance(scopes, str):
        return scopes.split()
    if isinstance(scopes, list) and all(isinstance(scope, str) for scope in scopes):
        return scopes
    raise jwt.InvalidTokenError("the scope claim is neither text nor a list of text")


def _algorithms_for(key: object, allowed: list[str]) -> list[str]:
    """The allowed algorithms that fit the key's type: a token cannot pick an algorithm for a key
    of another kind (an `ES256` header on an RSA key), whatever its header says."""
    if isinstance(key, RSAPublicKey):
        family: tuple[str, ...] = ("RS", "PS")
    elif isinstance(key, EllipticCurvePublicKey):
        family = ("ES",)
    elif isinstance(key, Ed25519PublicKey | Ed448PublicKey):
        family = ("EdDSA",)
    else:
        return []
    return [name for name in allowed if name.startswith(family)]


def token_verifier(settings: Settings) -> TokenVerifier | None:
    """The verifier the settings configure (JWT wins over static tokens), or None: auth is off."""
    if settings.auth_jwks_url:
        return JwtVerifier(settings)
    if settings.auth_tokens:
        return StaticTokenVerifier(settings)
    return None


def auth_settings(settings: Settings) -> AuthSettings:
    return AuthSettings(
        issuer_url=AnyHttpUrl(settings.auth_issuer_url or settings.resource_url),
        resource_server_url=AnyHttpUrl(settings.resource_url),
        required_scopes=settings.auth_scopes or None,
        validate_token_resource=True,
    )


class ScopeChallenges:
    """Completes the SDK's bearer challenges with the scopes needed, and enforces job scopes.

    A middleware of the SDK's app, inside its authentication (`scope["user"]`): each request's
    token is verified once, by the SDK, so a refused one costs one check and logs one line."""

    def __init__(self, app: ASGIApp, settings: Settings, jobs: Iterable[JobSpec]) -> None:
        self._app = app
        self._path = settings.path
        self._required = list(settings.auth_scopes)
        self._job_scopes = {spec.name: list(spec.scopes) for spec in jobs if spec.scopes}
        self._metadata = str(build_resource_metadata_url(AnyHttpUrl(settings.resource_url)))
        self._max_body = settings.max_request_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].rstrip("/") != self._path.rstrip("/"):
            await self._app(scope, receive, send)
            return
        user = scope.get("user")
        access = user.access_token if isinstance(user, AuthenticatedUser) else None
        if (
            access is not None and scope["method"] == "POST" and self._job_scopes
        ):  # only an authenticated caller's body is read here (else: the SDK's 401)
            body = await _read_body(receive, self._max_body)
            if body is None:
                await send({"type": "http.response.start", "status": 413, "headers": []})
                await send({"type": "http.response.body", "body": b"Request body too large"})
                return
            missing = self._missing_job_scopes(access.scopes, body)
            if missing:
                await self._refuse(send, missing)
                return
            receive = _replay(body, receive)
        await self._app(scope, receive, self._with_scope(send))

    def _missing_job_scopes(self, granted: list[str], body: bytes) -> list[str]:
        try:
            message = json.loads(body)
        except (ValueError, RecursionError):
            return []  # malformed: the SDK answers it
        params = message.get("params") if isinstance(message, dict) and message.get("method") == "tools/call" else None
        name = params.get("name") if isinstance(params, dict) else None
        needed = self._job_scopes.get(name, []) if isinstance(name, str) else []
        return [scope for scope in needed if scope not in granted]

    async def _refuse(self, send: Send, missing: list[str]) -> None:
        description = f"This tool requires the scope(s): {' '.join(missing)}"
        body = json.dumps({"error": "insufficient_scope", "error_description": description}).encode()
        challenge = self._challenge("insufficient_scope", description, [*self._required, *missing])
        headers = [(b"content-type", b"application/json"), (b"www-authenticate", challenge.encode())]
        await send({"type": "http.response.start", "status": 403, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _challenge(self, error: str, description: str, scopes: list[str]) -> str:
        parts = [f'error="{error}"', f'error_description="{description}"', f'resource_metadata="{self._metadata}"']
        if scopes:
            parts.append(f'scope="{" ".join(dict.fromkeys(scopes))}"')
        return "Bearer " + ", ".join(parts)

    def _with_scope(self, send: Send) -> Send:
        if not self._required:
            return send

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] in (401, 403):
                headers = [
                    (name, value + f', scope="{" ".join(self._required)}"'.encode())
                    if name.lower() == b"www-authenticate" and b"scope=" not in value
                    else (name, value)
                    for name, value in message.get("headers", [])
                ]
                message = {**message, "headers": headers}
            await send(message)

        return sending


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None once it passes `limit` bytes."""
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body already read, then the client's own messages (its disconnect cancels the call)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
