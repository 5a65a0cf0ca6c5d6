"""Stand-ins for Microsoft's sign-in, for tests and the console: the real msal code runs against them.

`FakeSignIn` is what msal's `http_client` hook talks to instead of login.microsoftonline.com (or an
Azure VM's managed-identity endpoint): OpenID discovery, instance discovery and the token endpoint.
It checks what a real sign-in checks (client id, secret, or the client assertion's signature by
the registered certificate) and issues JWT-shaped tokens carrying a `roles` claim.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import random
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

IMDS_TOKEN_URL = "http://169.254.169.254/metadata/identity/oauth2/token"  # noqa: S105 - a URL


def make_access_token(
    *, audience: str, roles: Iterable[str], app_id: str = "app", tenant: str = "tenant"
) -> str:
    """A JWT-shaped token (unsigned: only its claims are read by the bot)."""

    def b64(data: Mapping[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    claims = {"aud": audience, "appid": app_id, "tid": tenant, "roles": sorted(roles),
              "jti": uuid.uuid4().hex}
    return f"{b64({'typ': 'JWT', 'alg': 'none'})}.{b64(claims)}.c2lnbmF0dXJl"


def write_test_certificate(path: Path, *, common_name: str = "mam-bot test", days: int = 30) -> str:
    """Write a self-signed RSA key + certificate PEM to `path`; return the certificate's PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(key_pem + cert_pem)
    return cert_pem.decode()


@dataclass
class FakeResponse:
    """The shape msal reads from `requests.Response`."""

    status_code: int
    text: str
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise requests.HTTPError(f"HTTP {self.status_code}")

    def json(self) -> Any:
        return json.loads(self.text)


@dataclass
class SignInCall:
    method: str
    url: str
    params: dict[str, str]
    data: dict[str, str]

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc


class FakeSignIn:
    """Microsoft's sign-in for one tenant and one app registration, behind msal's `http_client`.

    `roles` maps a resource (`https://graph.microsoft.com`) to the roles its tokens carry.
    """

    def __init__(
        self,
        *,
        tenant: str = "contoso.onmicrosoft.com",
        client_id: str = "00000000-0000-0000-0000-00000000b07a",
        secret: str | None = "s3cret",  # noqa: S107 - the stand-in's own test secret
        certificate_pem: str | None = None,
        roles: Mapping[str, Iterable[str]] | None = None,
        lifetime: int = 3600,
    ) -> None:
        self.tenant = tenant
        self.client_id = client_id
        self.secret = secret
        self.certificate = (
            x509.load_pem_x509_certificate(certificate_pem.encode()) if certificate_pem else None
        )
        self.roles = {k.rstrip("/"): set(v) for k, v in (roles or {}).items()}
        self.lifetime = lifetime
        self.calls: list[SignInCall] = []
        self.error: dict[str, Any] | None = None  # set to answer every token request with this error
        self._lock = threading.Lock()

    @property
    def token_calls(self) -> list[SignInCall]:
        return [c for c in self.calls
                if c.path.endswith("/oauth2/v2.0/token") or c.url.startswith(IMDS_TOKEN_URL)]

    # ---- msal's http_client interface ------------------------------------------------------------

    def get(self, url: str, params: Mapping[str, Any] | None = None, **_: Any) -> FakeResponse:
        call = self._record("GET", url, params, None)
        if call.url.startswith(IMDS_TOKEN_URL):
            return self._managed_identity_token(call)
        host = call.host
        if call.path.endswith("/common/discovery/instance"):
            return _ok({
                "tenant_discovery_endpoint": f"https://{host}/{self.tenant}/v2.0/.well-known/openid-configuration",
                "api-version": "1.1",
                "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
            })
        if call.path.endswith("/v2.0/.well-known/openid-configuration"):
            tenant = call.path.strip("/").split("/")[0]
            if tenant.lower() != self.tenant.lower():
                return _error(400, 90002, "invalid_tenant", f"Tenant '{tenant}' not found.")
            base = f"https://{host}/{tenant}"
            return _ok({
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "issuer": f"https://{host}/{tenant}/v2.0",
                "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
            })
        return FakeResponse(404, json.dumps({"error": "not_found"}))

    def post(
        self, url: str, params: Mapping[str, Any] | None = None, data: Any = None, **_: Any
    ) -> FakeResponse:
        call = self._record("POST", url, params, data)
        if not call.path.endswith("/oauth2/v2.0/token"):
            return FakeResponse(404, json.dumps({"error": "not_found"}))
        if self.error is not None:
            return FakeResponse(400, json.dumps(self.error))
        form = call.data
        if form.get("grant_type") != "client_credentials" or form.get("client_id") != self.client_id:
            return _error(400, 700016, "unauthorized_client", "Application was not found in the directory")
        if "client_assertion" in form:
            problem = self._check_assertion(form["client_assertion"], url)
            if problem:
                return _error(401, 700027, "invalid_client", problem)
        elif self.secret is None or form.get("client_secret") != self.secret:
            return _error(401, 7000215, "invalid_client", "Invalid client secret provided.")
        scopes = form.get("scope", "").split()
        resource = next((s.removesuffix("/.default") for s in scopes if s.endswith("/.default")), None)
        if resource is None:
            return _error(400, 1002012, "invalid_scope", "The provided value for scope is not valid.")
        return _ok({"token_type": "Bearer", "expires_in": self.lifetime, "ext_expires_in": self.lifetime,
                    "access_token": self._issue(resource)})

    # ---- internals -------------------------------------------------------------------------------

    def _record(self, method: str, url: str, params: Mapping[str, Any] | None, data: Any) -> SignInCall:
        query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        query.update({k: str(v) for k, v in (params or {}).items()})
        form = {k: _text(v) for k, v in data.items()} if isinstance(data, Mapping) else {}
        if isinstance(data, str | bytes):
            raw = data.decode() if isinstance(data, bytes) else data
            form = {k: v[0] for k, v in parse_qs(raw).items()}
        call = SignInCall(method, url, query, form)
        with self._lock:
            self.calls.append(call)
        return call

    def _issue(self, resource: str) -> str:
        return make_access_token(audience=resource, roles=self.roles.get(resource.rstrip("/"), ()),
                                 app_id=self.client_id, tenant=self.tenant)

    def _check_assertion(self, assertion: str, token_url: str) -> str | None:
        if self.certificate is None:
            return "AADSTS700027: no certificate is registered for this application"
        try:
            claims = jwt.decode(assertion, self.certificate.public_key(),  # type: ignore[arg-type]
                                algorithms=["PS256", "RS256"], audience=token_url)
        except jwt.PyJWTError as exc:
            return f"AADSTS700027: Client assertion failed signature validation ({exc})"
        if claims.get("iss") != self.client_id or claims.get("sub") != self.client_id:
            return "AADSTS700027: the assertion's issuer is not the client id"
        header = jwt.get_unverified_header(assertion)
        named = str(header.get("x5t#S256", "")).rstrip("=")
        if base64.urlsafe_b64decode(named + "=" * (-len(named) % 4)) != self.certificate.fingerprint(
            hashes.SHA256()
        ):
            return "AADSTS700027: the assertion names another certificate"
        return None

    def _managed_identity_token(self, call: SignInCall) -> FakeResponse:
        resource = call.params.get("resource", "")
        if not resource or resource.endswith("/.default"):
            return FakeResponse(400, json.dumps({"error": "invalid_resource",
                                                 "error_description": "AADSTS500011: bad resource"}))
        return _ok({"access_token": self._issue(resource), "expires_in": str(self.lifetime),
                    "resource": resource, "token_type": "Bearer"})


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _ok(body: Mapping[str, Any]) -> FakeResponse:
    return FakeResponse(200, json.dumps(body))


def _error(status: int, code: int, error: str, text: str) -> FakeResponse:
    return FakeResponse(status, json.dumps({
        "error": error,
        "error_description": f"AADSTS{code}: {text}\r\nTrace ID: t-1\r\nCorrelation ID: c-1",
        "error_codes": [code],
        "trace_id": "t-1",
        "correlation_id": "c-1",
    }))


class FakeClock:
    """A monotonic clock that moves only when told to, and a `sleep` that moves it."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


# ---- Graph / Defender stand-ins over httpx.MockTransport ----------------------------------------

Answer = Any  # httpx.Response, or a callable taking the request and returning one


class Recorder:
    """A MockTransport handler answering from a table of (method, path) -> responses; keeps requests.

    Responses queued for a route are used in order and the last one repeats.
    """

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[Answer]] = {}
        self.requests: list[httpx.Request] = []

    def on(self, method: str, path: str, *answers: Answer) -> Recorder:
        self.routes.setdefault((method.upper(), path), []).extend(answers)
        return self

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        queue = self.routes.get((request.method, request.url.path))
        if not queue:
            return httpx.Response(404, json={"error": {"code": "ResourceNotFound",
                                                       "message": f"no route {request.url.path}"}})
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        response: httpx.Response = answer(request) if callable(answer) else answer
        return response

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def sent(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method.upper() and r.url.path == path]

    def json_bodies(self, method: str, path: str) -> list[Any]:
        return [json.loads(r.content) for r in self.sent(method, path)]


ALL_GRAPH_ROLES = (
    "DeviceManagementServiceConfig.ReadWrite.All",
    "DeviceManagementApps.ReadWrite.All",
    "Group.Read.All",
    "User.Read.All",
)


def global_settings(**overrides: Any) -> Any:
    """Settings for the global cloud with a client secret, ignoring the environment's `.env`."""
    from bot.settings import Settings

    values: dict[str, Any] = {
        "mam_cloud": "global",
        "azure_tenant_id": "contoso.onmicrosoft.com",
        "azure_client_id": "00000000-0000-0000-0000-00000000b07a",
        "azure_client_secret": "s3cret",
        "azure_client_certificate_path": None,
        "azure_use_managed_identity": False,
        "mam_graph_url": None,
        "mam_defender_url": None,
        "mam_authority_url": None,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@dataclass
class Harness:
    """Clients wired to a Recorder and a FakeSignIn, on a FakeClock."""

    clients: Any
    recorder: Recorder
    sign_in: FakeSignIn
    clock: FakeClock


def harness(
    recorder: Recorder | None = None,
    *,
    settings: Any = None,
    sign_in: FakeSignIn | None = None,
    budget: Any = None,
    **kwargs: Any,
) -> Harness:
    from bot.microsoft.budget import UnlimitedBudget
    from bot.microsoft.clients import build_clients

    recorder = recorder or Recorder()
    settings = settings or global_settings()
    endpoints = settings.endpoints()
    sign_in = sign_in or FakeSignIn(roles={
        endpoints.graph_resource: ALL_GRAPH_ROLES,
        (endpoints.defender_resource or endpoints.defender_url or "defender"): ("Machine.Read.All",),
    })
    clock = FakeClock()
    clients = build_clients(
        settings, recorder.transport(), clock=clock, sleep=clock.sleep, rng=random.Random(7),
        budget=budget if budget is not None else UnlimitedBudget(), sign_in_http_client=sign_in, **kwargs,
    )
    return Harness(clients, recorder, sign_in, clock)
