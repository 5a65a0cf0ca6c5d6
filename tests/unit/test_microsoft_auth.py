"""Sign-in: the real msal code against a stand-in for Microsoft's sign-in (msal's http_client hook)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from bot.microsoft.auth import (
    CachingTokenSource,
    StaticTokenSource,
    build_token_source,
    load_certificate,
    token_roles,
)
from bot.microsoft.errors import SignInError
from bot.microsoft.testing import (
    FakeClock,
    FakeSignIn,
    global_settings,
    make_access_token,
    write_test_certificate,
)
from bot.settings import SettingsError

GRAPH = "https://graph.microsoft.com"
DEFENDER = "https://api.securitycenter.microsoft.com"
ROLES = {GRAPH: ["DeviceManagementApps.Read.All"], DEFENDER: ["Machine.Read.All"]}


@pytest.fixture(scope="module")
def cert_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("cert") / "bot.pem"
    return path, write_test_certificate(path)


def source(sign_in: FakeSignIn, clock: FakeClock, **settings: object):
    return build_token_source(global_settings(**settings), http_client=sign_in, clock=clock)


def test_client_secret_sign_in_asks_for_each_resource_default_scope():
    sign_in, clock = FakeSignIn(roles=ROLES), FakeClock()
    tokens = source(sign_in, clock)

    graph = tokens.token(GRAPH)
    defender = tokens.token(DEFENDER)

    assert graph.roles == {"DeviceManagementApps.Read.All"}
    assert defender.roles == {"Machine.Read.All"}
    scopes = [c.data["scope"] for c in sign_in.token_calls]
    assert scopes == [f"{GRAPH}/.default", f"{DEFENDER}/.default"]
    assert all(c.host == "login.microsoftonline.com" for c in sign_in.calls)
    assert sign_in.token_calls[0].path == "/contoso.onmicrosoft.com/oauth2/v2.0/token"


def test_token_is_reused_until_shortly_before_expiry():
    sign_in, clock = FakeSignIn(roles=ROLES, lifetime=3600), FakeClock()
    tokens = source(sign_in, clock)

    first = tokens.token(GRAPH)
    clock.advance(3600 - 301)
    assert tokens.token(GRAPH) is first
    assert len(sign_in.token_calls) == 1

    clock.advance(2)  # now inside the last five minutes
    second = tokens.token(GRAPH)
    assert second.value != first.value
    assert len(sign_in.token_calls) == 2


def test_short_lived_token_refreshes_at_half_life():
    sign_in, clock = FakeSignIn(roles=ROLES, lifetime=120), FakeClock()
    tokens = source(sign_in, clock)
    first = tokens.token(GRAPH)
    clock.advance(59)
    assert tokens.token(GRAPH) is first
    clock.advance(2)
    assert tokens.token(GRAPH) is not first


def test_invalidate_forces_a_new_sign_in():
    sign_in, clock = FakeSignIn(roles=ROLES), FakeClock()
    tokens = source(sign_in, clock)
    tokens.token(GRAPH)
    tokens.invalidate(GRAPH)
    tokens.token(GRAPH)
    assert len(sign_in.token_calls) == 2


def test_concurrent_callers_share_one_token_request():
    calls = 0
    gate = threading.Event()

    def slow_acquire(resource: str) -> dict[str, object]:
        nonlocal calls
        calls += 1
        gate.wait(2)
        return {"access_token": make_access_token(audience=resource, roles=[]), "expires_in": 3600}

    tokens = CachingTokenSource(slow_acquire, clock=time.monotonic)
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(tokens.token(GRAPH).value)) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.05)  # let them all queue on the lock (real threads; short and bounded)
    gate.set()
    for t in threads:
        t.join(5)
    assert calls == 1
    assert len(set(results)) == 1 and len(results) == 8


def test_wrong_secret_says_which_setting_is_wrong():
    sign_in = FakeSignIn(secret="right")
    tokens = source(sign_in, FakeClock(), azure_client_secret="wrong")
    with pytest.raises(SignInError) as err:
        tokens.token(GRAPH)
    assert "AZURE_CLIENT_SECRET" in str(err.value)
    assert err.value.code == "AADSTS7000215"
    assert err.value.request_id == "t-1"
    assert "wrong" not in str(err.value) and "right" not in str(err.value)


def test_unknown_tenant_is_a_sign_in_error():
    tokens = source(
        FakeSignIn(tenant="contoso.onmicrosoft.com"), FakeClock(), azure_tenant_id="fabrikam.example"
    )
    with pytest.raises(SignInError, match="Signing in"):
        tokens.token(GRAPH)


def test_certificate_credential_signs_a_client_assertion(cert_file):
    path, cert_pem = cert_file
    sign_in = FakeSignIn(secret=None, certificate_pem=cert_pem, roles=ROLES)
    tokens = source(sign_in, FakeClock(), azure_client_secret=None, azure_client_certificate_path=path)

    assert tokens.token(GRAPH).roles == {"DeviceManagementApps.Read.All"}
    form = sign_in.token_calls[0].data
    assert "client_secret" not in form
    assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def test_certificate_wins_over_secret_and_a_foreign_certificate_is_refused(cert_file, tmp_path):
    path, _ = cert_file
    other = tmp_path / "other.pem"
    other_pem = write_test_certificate(other)
    sign_in = FakeSignIn(secret="s3cret", certificate_pem=other_pem)
    tokens = source(sign_in, FakeClock(), azure_client_certificate_path=path)
    with pytest.raises(SignInError, match="certificate is not registered"):
        tokens.token(GRAPH)


def test_load_certificate_computes_thumbprints(cert_file):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    path, cert_pem = cert_file
    credential = load_certificate(path)
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    assert credential.thumbprint == cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303
    assert len(credential.thumbprint) == 40
    assert credential.thumbprint_sha256 == cert.fingerprint(hashes.SHA256()).hex().upper()
    assert "PRIVATE KEY" not in repr(credential)
    assert credential.for_msal()["public_certificate"].startswith("-----BEGIN CERTIFICATE-----")


def test_load_certificate_explains_bad_files(tmp_path, cert_file):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    _, cert_pem = cert_file
    only_cert = tmp_path / "cert-only.pem"
    only_cert.write_text(cert_pem)
    with pytest.raises(SettingsError, match=r"AZURE_CLIENT_CERTIFICATE_PATH: .* no PEM private key"):
        load_certificate(only_cert)

    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - fast; never signs
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    locked = tmp_path / "locked.pem"
    locked.write_bytes(encrypted + cert_pem.encode())
    with pytest.raises(SettingsError, match="encrypted"):
        load_certificate(locked)

    plain = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    mismatched = tmp_path / "mismatch.pem"
    mismatched.write_bytes(plain + cert_pem.encode())
    with pytest.raises(SettingsError, match="no certificate for its private key"):
        load_certificate(mismatched)


@pytest.mark.parametrize("client_id", [None, "11111111-2222-3333-4444-555555555555"])
def test_managed_identity_asks_for_a_resource_not_a_scope(monkeypatch, client_id):
    for name in (
        "IDENTITY_ENDPOINT",
        "IDENTITY_HEADER",
        "MSI_ENDPOINT",
        "MSI_SECRET",
        "IDENTITY_SERVER_THUMBPRINT",
    ):
        monkeypatch.delenv(name, raising=False)
    sign_in = FakeSignIn(roles=ROLES)
    tokens = source(
        sign_in,
        FakeClock(),
        azure_use_managed_identity=True,
        azure_client_secret=None,
        azure_client_id=client_id,
    )

    assert tokens.token(DEFENDER).roles == {"Machine.Read.All"}
    assert tokens.token(DEFENDER).roles == {"Machine.Read.All"}  # cached
    (call,) = sign_in.token_calls
    assert call.params["resource"] == DEFENDER
    assert call.params.get("client_id") == client_id


def test_missing_credentials_name_the_setting():
    with pytest.raises(SettingsError, match="AZURE_CLIENT_SECRET"):
        build_token_source(
            global_settings(azure_client_secret=None), http_client=FakeSignIn(), clock=FakeClock()
        )
    with pytest.raises(SettingsError, match="AZURE_TENANT_ID"):
        build_token_source(global_settings(azure_tenant_id=None), http_client=FakeSignIn(), clock=FakeClock())


def test_sandbox_uses_a_static_token_without_sign_in():
    sign_in = FakeSignIn()
    tokens = build_token_source(global_settings(mam_cloud="sandbox"), http_client=sign_in, clock=FakeClock())
    assert isinstance(tokens, StaticTokenSource)
    assert tokens.token(GRAPH).roles is None
    assert sign_in.calls == []


def test_token_roles_reads_the_claim_and_tolerates_non_jwts():
    assert token_roles(make_access_token(audience=GRAPH, roles=["B", "A"])) == {"A", "B"}
    assert token_roles("opaque") is None
    assert token_roles("a.!!!.c") is None


def test_token_value_is_not_in_its_repr():
    sign_in, clock = FakeSignIn(roles=ROLES), FakeClock()
    token = source(sign_in, clock).token(GRAPH)
    assert token.value not in repr(token)


def test_an_unreachable_sign_in_is_a_sign_in_error():
    import requests

    class Offline:
        def get(self, url, **kwargs):
            raise requests.ConnectionError(f"cannot reach {url}")

        post = get

    tokens = build_token_source(global_settings(), http_client=Offline(), clock=FakeClock())
    with pytest.raises(SignInError, match=r"cannot reach https://login\.microsoftonline\.com"):
        tokens.token(GRAPH)
