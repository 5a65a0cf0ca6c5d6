"""Access tokens for Graph and Defender: msal for every cloud, a static token for the sandbox.

msal talks to Microsoft's sign-in over `requests` (its own transport, not ours). We keep one
token per resource in our own cache, on the bot's clock, and fetch it under a per-resource lock so
a burst of calls makes one sign-in request. msal's own access-token cache is bypassed: two caches
on two clocks would disagree about expiry, and ours is the one tests can drive.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import msal
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.microsoft.errors import API_LABELS, SignInError
from bot.settings import Cloud, Settings, SettingsError

log = logging.getLogger(__name__)

SANDBOX_TOKEN = "sandbox-token"  # noqa: S105 - not a secret: the sandbox tenant accepts any bearer; this one is easy to spot
SIGN_IN_TIMEOUT = (5.0, 20.0)  # requests' (connect, read) seconds for Microsoft's sign-in
MAX_REFRESH_MARGIN = 300.0  # refresh 5 minutes before expiry, as msal itself would

Clock = Callable[[], float]
AcquireFn = Callable[[str], Mapping[str, Any]]  # resource -> msal's result dict


@dataclass(frozen=True)
class AccessToken:
    value: str = field(repr=False)
    expires_at: float  # on the token source's clock
    refresh_at: float
    roles: frozenset[str] | None  # the `roles` claim; None when the token is not a JWT (sandbox)


class TokenSource(Protocol):
    def token(self, resource: str) -> AccessToken: ...

    def invalidate(self, resource: str) -> None:
        """Forget the cached token (the API rejected it); the next call signs in again."""


def token_roles(value: str) -> frozenset[str] | None:
    """The application permissions in an access token's `roles` claim (unverified: for display)."""
    parts = value.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    roles = payload.get("roles") if isinstance(payload, dict) else None
    return frozenset(r for r in roles if isinstance(r, str)) if isinstance(roles, list) else frozenset()


class StaticTokenSource:
    """The sandbox tenant: no Microsoft sign-in, one bearer token that never expires."""

    def __init__(self, value: str = SANDBOX_TOKEN) -> None:
        self._token = AccessToken(value, float("inf"), float("inf"), None)

    def token(self, resource: str) -> AccessToken:
        return self._token

    def invalidate(self, resource: str) -> None:
        return None


class CachingTokenSource:
    """One cached token per resource; a per-resource lock makes concurrent callers share one fetch."""

    def __init__(
        self,
        acquire: AcquireFn,
        *,
        clock: Clock,
        api_names: Mapping[str, str] | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._acquire = acquire
        self._on_close = on_close
        self._clock = clock
        self._api_names = dict(api_names or {})
        self._tokens: dict[str, AccessToken] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def _lock(self, resource: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(resource, threading.Lock())

    def token(self, resource: str) -> AccessToken:
        with self._lock(resource):
            cached = self._tokens.get(resource)
            if cached is not None and self._clock() < cached.refresh_at:
                return cached
            started = self._clock()
            try:
                result = self._acquire(resource)
            except SignInError:
                raise
            except requests.RequestException as exc:
                # The sign-in host (or the managed-identity endpoint) never answered.
                raise SignInError(
                    f"Signing in for {self._label(resource)} failed: {unreachable_reason(exc)}", code="sign-in"
                ) from exc
            except (ValueError, RuntimeError) as exc:
                # msal raises these for discovery failures (unknown tenant or authority, no
                # network, a managed-identity endpoint that isn't there).
                raise SignInError(
                    f"Signing in for {self._label(resource)} failed: {_first_line(str(exc))}", code="sign-in"
                ) from exc
            token = self._token_from(resource, result, started)
            self._tokens[resource] = token
            log.info("signed in for %s (token valid %.0f s)", self._label(resource),
                     token.expires_at - started)
            return token

    def invalidate(self, resource: str) -> None:
        with self._lock(resource):
            self._tokens.pop(resource, None)

    def close(self) -> None:
        """Close the sign-in session this source opened (not one a caller passed in)."""
        if self._on_close is not None:
            self._on_close()

    def _label(self, resource: str) -> str:
        api = self._api_names.get(resource)
        return API_LABELS.get(api, resource) if api else resource

    def _token_from(self, resource: str, result: Mapping[str, Any], started: float) -> AccessToken:
        value = result.get("access_token")
        if not isinstance(value, str) or not value:
            raise sign_in_error(result, self._label(resource))
        try:
            lifetime = float(result.get("expires_in", 3600))
        except (TypeError, ValueError):
            lifetime = 3600.0
        margin = min(MAX_REFRESH_MARGIN, lifetime / 2)
        return AccessToken(value, started + lifetime, started + lifetime - margin, token_roles(value))


# Hints for the AADSTS codes an admin setting the bot up actually meets.
_AADSTS_HINTS = {
    7000215: "AZURE_CLIENT_SECRET is not a valid secret of this app registration (use the secret's Value, "
             "not its Secret ID)",
    7000222: "the client secret has expired: add a new one under the app's Certificates & secrets",
    700016: "AZURE_CLIENT_ID names no app registration in this tenant (check AZURE_CLIENT_ID and "
            "AZURE_TENANT_ID)",
    700027: "the certificate is not registered on the app: upload its public part under "
            "Certificates & secrets",
    90002: "AZURE_TENANT_ID names no tenant in this cloud (check AZURE_TENANT_ID and MAM_CLOUD)",
    900023: "AZURE_TENANT_ID is not a tenant id or domain",
    500011: "the API is not registered in this tenant: for Defender, is Microsoft Defender for Endpoint "
            "licensed and set up?",
    7000112: "the app registration (or its service principal) is disabled",
    1003030: "the tenant is not in this cloud (check MAM_CLOUD)",
}


def sign_in_error(result: Mapping[str, Any], what: str) -> SignInError:
    codes = [c for c in result.get("error_codes") or [] if isinstance(c, int)]
    hint = next((_AADSTS_HINTS[c] for c in codes if c in _AADSTS_HINTS), None)
    detail = _first_line(str(result.get("error_description") or result.get("error") or "no token returned"))
    message = f"Signing in for {what} failed: {hint or detail}"
    return SignInError(
        message,
        code=f"AADSTS{codes[0]}" if codes else (str(result.get("error")) if result.get("error") else None),
        detail=detail,
        request_id=_str_or_none(result.get("trace_id")),
        client_request_id=_str_or_none(result.get("correlation_id")),
    )


def unreachable_reason(exc: requests.RequestException) -> str:
    """`could not reach https://host (connection refused)`: a network failure in a few words."""
    from urllib.parse import urlsplit

    url = getattr(getattr(exc, "request", None), "url", None)
    parts = urlsplit(str(url)) if url else None
    where = f"{parts.scheme}://{parts.netloc}" if parts and parts.netloc else "the sign-in host"
    text = str(exc)
    if isinstance(exc, requests.Timeout) or "timed out" in text.lower():
        why = "timed out"
    elif "NameResolutionError" in text or "Name or service not known" in text or "getaddrinfo" in text:
        why = "host name not found"
    elif "Connection refused" in text or "ConnectionRefused" in text:
        why = "connection refused"
    elif isinstance(exc, requests.exceptions.SSLError):
        why = "TLS handshake failed"
    else:
        why = _first_line(text)[:200]
    return f"could not reach {where} ({why})"


def sign_in_reason(exc: SignInError) -> str:
    """The reason of a sign-in failure without the API it was for (the same for Graph and Defender)."""
    reason = exc.message.split(" failed: ", 1)[-1]
    return f"{reason} (error code {exc.code})" if exc.code and exc.code.startswith("AADSTS") else reason


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


# ---- certificate credential ---------------------------------------------------------------------


@dataclass(frozen=True)
class CertificateCredential:
    """A PEM file's private key and the certificate that matches it."""

    private_key_pem: str = field(repr=False)
    certificate_pem: str
    thumbprint: str  # SHA-1, uppercase hex: what the Entra portal shows under Certificates & secrets
    thumbprint_sha256: str
    not_after: datetime

    def for_msal(self) -> dict[str, str]:
        # With `public_certificate` msal signs with the SHA-256 thumbprint (PS256), not legacy SHA-1.
        return {"private_key": self.private_key_pem, "public_certificate": self.certificate_pem}


def load_certificate(path: Path) -> CertificateCredential:
    """Read AZURE_CLIENT_CERTIFICATE_PATH: an unencrypted private key and its certificate, in PEM."""

    def fail(why: str) -> SettingsError:
        return SettingsError(f"AZURE_CLIENT_CERTIFICATE_PATH: {path} {why}")

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise fail(f"can't be read ({exc.strerror})") from None
    key_block = _pem_block(data, b"PRIVATE KEY")
    if key_block is None:
        raise fail("holds no PEM private key (-----BEGIN PRIVATE KEY-----)")
    if b"ENCRYPTED" in key_block.split(b"\n", 1)[0] or b"Proc-Type: 4,ENCRYPTED" in key_block:
        raise fail("holds an encrypted private key; export it without a password (openssl pkey -in k.pem)")
    try:
        key = serialization.load_pem_private_key(key_block, password=None)
    except (ValueError, TypeError) as exc:
        raise fail(f"holds a private key that can't be loaded ({exc})") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise fail("holds a non-RSA key; msal signs client assertions with RSA only")
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise fail("holds no PEM certificate (-----BEGIN CERTIFICATE-----)") from None
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    leaf = next(
        (c for c in certificates
         if c.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo) == public),
        None,
    )
    if leaf is None:
        raise fail("holds no certificate for its private key")
    not_after = leaf.not_valid_after_utc
    if not_after < datetime.now(UTC):
        log.warning("the client certificate expired on %s; Entra ID will refuse it", not_after.date())
    return CertificateCredential(
        private_key_pem=key_block.decode("ascii"),
        certificate_pem=leaf.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        thumbprint=leaf.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303 - Entra's display id
        thumbprint_sha256=leaf.fingerprint(hashes.SHA256()).hex().upper(),
        not_after=not_after,
    )


def _pem_block(data: bytes, label_suffix: bytes) -> bytes | None:
    start = 0
    while (begin := data.find(b"-----BEGIN ", start)) != -1:
        header_end = data.find(b"-----", begin + 11)
        if header_end == -1:
            return None
        label = data[begin + 11:header_end]
        end_marker = b"-----END " + label + b"-----"
        end = data.find(end_marker, header_end)
        if end == -1:
            return None
        if label.endswith(label_suffix):
            return data[begin:end + len(end_marker)] + b"\n"
        start = end + len(end_marker)
    return None


# ---- building the token source from settings ----------------------------------------------------


class _TimeoutSession(requests.Session):
    """requests has no default timeout; a hung sign-in must not hang a Slack command."""

    def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", SIGN_IN_TIMEOUT)
        return super().request(method, url, *args, **kwargs)


class _NoAccessTokenCache(msal.TokenCache):
    """msal's cache minus access-token hits: CachingTokenSource decides when a token is stale."""

    def search(self, credential_type: Any, target: Any = None, query: Any = None, *, now: Any = None) -> Any:
        if credential_type == self.CredentialType.ACCESS_TOKEN:
            return iter(())
        return super().search(credential_type, target=target, query=query, now=now)


def sign_in_http_client() -> requests.Session:
    return _TimeoutSession()


def build_token_source(
    settings: Settings,
    *,
    http_client: Any = None,
    clock: Clock,
    api_names: Mapping[str, str] | None = None,
) -> TokenSource:
    """The settings' way of signing in. Nothing touches the network until the first token."""
    if settings.mam_cloud is Cloud.SANDBOX:
        return StaticTokenSource()
    own_session = sign_in_http_client() if http_client is None else None
    http = http_client if http_client is not None else own_session
    if settings.azure_use_managed_identity:
        acquire = _managed_identity_acquirer(settings, http)
    else:
        acquire = _confidential_client_acquirer(settings, http)
    return CachingTokenSource(acquire, clock=clock, api_names=api_names,
                              on_close=own_session.close if own_session is not None else None)


def _managed_identity_acquirer(settings: Settings, http: Any) -> AcquireFn:
    # With AZURE_CLIENT_ID the identity is user-assigned; without, the resource's system identity.
    identity: msal.ManagedIdentity = (
        msal.UserAssignedManagedIdentity(client_id=settings.azure_client_id)
        if settings.azure_client_id
        else msal.SystemAssignedManagedIdentity()
    )
    client = msal.ManagedIdentityClient(identity, http_client=http, token_cache=_NoAccessTokenCache())

    def acquire(resource: str) -> Mapping[str, Any]:
        # Managed identity asks for a resource, not a `/.default` scope.
        result: Mapping[str, Any] = client.acquire_token_for_client(resource=resource)
        return result

    return acquire


def _confidential_client_acquirer(settings: Settings, http: Any) -> AcquireFn:
    if not settings.azure_tenant_id:
        raise SettingsError("AZURE_TENANT_ID: not set; expected the Entra tenant id or its primary domain")
    if not settings.azure_client_id:
        raise SettingsError("AZURE_CLIENT_ID: not set; expected the app registration's application id")
    credential: str | dict[str, str]
    if settings.azure_client_certificate_path is not None:
        certificate = load_certificate(settings.azure_client_certificate_path)
        log.info("signing in with certificate %s", certificate.thumbprint)
        credential = certificate.for_msal()
    elif settings.azure_client_secret is not None:
        credential = settings.azure_client_secret.get_secret_value()
    else:
        raise SettingsError(
            "AZURE_CLIENT_SECRET: not set; set it or AZURE_CLIENT_CERTIFICATE_PATH "
            "(or AZURE_USE_MANAGED_IDENTITY=true)"
        )
    authority_host = settings.endpoints().authority_url
    if not authority_host:
        raise SettingsError("MAM_AUTHORITY_URL: not set; expected an http(s) sign-in host")
    authority = f"{authority_host.rstrip('/')}/{settings.azure_tenant_id.strip()}"
    client_id = settings.azure_client_id
    # A custom sign-in host is one Microsoft's instance discovery doesn't know: skip discovery.
    instance_discovery = False if settings.mam_authority_url else None
    app: msal.ConfidentialClientApplication | None = None
    app_lock = threading.Lock()

    def get_app() -> msal.ConfidentialClientApplication:
        # Built on first use: msal fetches the OpenID configuration in its constructor.
        nonlocal app
        with app_lock:
            if app is None:
                app = msal.ConfidentialClientApplication(
                    client_id,
                    client_credential=credential,
                    authority=authority,
                    http_client=http,
                    instance_discovery=instance_discovery,
                    token_cache=_NoAccessTokenCache(),
                )
            return app

    def acquire(resource: str) -> Mapping[str, Any]:
        result: Mapping[str, Any] = get_app().acquire_token_for_client(scopes=[f"{resource}/.default"])
        return result

    return acquire
