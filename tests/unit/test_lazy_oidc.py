"""Tests of entrypoints/lazy_oidc.py and entrypoints/drive_robust_settings.py.

Two layers, both on loopback (127.0.0.1) only, with no network mocks:

* pure tests of the fetch/cache/validation machinery against scripted HTTP servers in threads;
* end-to-end tests: oidc-provider-mock as its own process (tests/unit/oidc_provider_proc.py, started,
  stopped and restarted on the same port) and the mini Drive (tests/minidrive: django-configurations
  Production, django-lasuite backend, DRF with mozilla's OIDCAuthentication, dockerflow) under gunicorn,
  driven through a full authorization-code login with ``requests``.

The module runs unchanged under Drive's pins (.venv) and the newest releases (.venv-newest): every
process is started with the interpreter running pytest.
"""

import logging
import pickle
import subprocess
import sys
import threading
import time

import lazy_oidc
import mozilla_django_oidc
import pytest
from oidc_helpers import (
    MINIDRIVE,
    Browser,
    DjangoServer,
    ProviderProcess,
    ScriptedServer,
    count_lines,
    free_port,
    query_param,
)

# Version-agnostic: run it with .venv (Drive's pins) and with .venv-newest (newest releases).
pytestmark = pytest.mark.newest

ISSUER = "https://idp.example.test/realms/drive"
SECRET = "client-secret-THAT-MUST-NOT-LEAK-7f3a"
UNREACHABLE = r"OIDC provider unreachable"
BACK = r"OIDC provider reachable again"


def document(issuer=ISSUER, **changes):
    doc = {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/protocol/openid-connect/auth",
        "token_endpoint": f"{issuer}/protocol/openid-connect/token",
        "userinfo_endpoint": f"{issuer}/protocol/openid-connect/userinfo",
        "jwks_uri": f"{issuer}/protocol/openid-connect/certs",
        "end_session_endpoint": f"{issuer}/protocol/openid-connect/logout",
    }
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not None}


def config(url, **kwargs):
    base = {"issuer": ISSUER, "discovery_url": url, "allow_http": True, "ttl": 60, "max_time": 2.0,
            "cooldown": 5.0, "timeout": 1.0}
    base.update(kwargs)
    return lazy_oidc.DiscoveryConfig(**base)


@pytest.fixture(autouse=True)
def _fresh_state():
    lazy_oidc.reset()
    yield
    lazy_oidc.reset()


@pytest.fixture
def scripted():
    servers = []

    def make(*steps):
        server = ScriptedServer(steps)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


# ------------------------------------------------------------------------------------------------
# Pure: fetching, caching, validation
# ------------------------------------------------------------------------------------------------
def test_valid_document_is_fetched_once_and_cached(scripted):
    server = scripted((200, document()))
    cache = lazy_oidc.Provider(config(server.url)).discovery
    assert cache.get()["token_endpoint"] == f"{ISSUER}/protocol/openid-connect/token"
    assert cache.get()["issuer"] == ISSUER
    assert server.hits == 1


def test_issuer_mismatch_is_refused_and_logged_once(scripted, caplog):
    server = scripted((200, document(issuer="https://evil.example.test")))
    cache = lazy_oidc.Provider(config(server.url, cooldown=0)).discovery
    with caplog.at_level(logging.ERROR, logger="lazy_oidc"):
        for _ in range(3):
            with pytest.raises(lazy_oidc.MetadataRefused) as err:
                cache.get()
    assert "issuer mismatch" in str(err.value) and "evil.example.test" in str(err.value)
    refusals = [r for r in caplog.records if "possible mix-up" in r.getMessage()]
    assert len(refusals) == 1, caplog.text
    assert server.hits == 3  # refused documents are not cached: each attempt asks again (cooldown 0)


def test_trailing_slash_is_a_mismatch_too():
    with pytest.raises(lazy_oidc.MetadataRefused, match="issuer mismatch"):
        lazy_oidc.validate_metadata(document(issuer=ISSUER + "/"), config("http://127.0.0.1:9/x"), "x")


def test_missing_jwks_uri_is_a_clear_error(scripted):
    server = scripted((200, document(jwks_uri=None)))
    with pytest.raises(lazy_oidc.MetadataRefused, match="lacks the required 'jwks_uri'"):
        lazy_oidc.Provider(config(server.url)).discovery.get()


def test_only_the_endpoints_still_needed_are_required():
    cfg = config("http://127.0.0.1:9/x", required=("authorization_endpoint",))
    doc = document(jwks_uri=None, token_endpoint=None, userinfo_endpoint=None)
    assert lazy_oidc.validate_metadata(doc, cfg, "x") is doc


def test_http_is_refused_unless_allowed(scripted):
    server = scripted((200, document()))
    cache = lazy_oidc.Provider(config(server.url, allow_http=False)).discovery
    with pytest.raises(lazy_oidc.MetadataRefused, match="OIDC_DISCOVERY_ALLOW_HTTP"):
        cache.get()
    assert server.hits == 0  # refused before any request
    with pytest.raises(lazy_oidc.MetadataRefused, match="token_endpoint"):
        lazy_oidc.validate_metadata(document(token_endpoint="http://idp.example.test/token"),
                                    config("https://x", allow_http=False), "x")


@pytest.mark.parametrize("body, message", [
    (b"[1, 2]", "not a JSON object"),
    (b"<html>oops</html>", "not valid JSON"),
    (b'{"issuer": "' + b"x" * 5000 + b'"}', "larger than 1024 bytes"),
])
def test_bad_bodies_are_refused(scripted, body, message):
    server = scripted((200, body))
    with pytest.raises(lazy_oidc.MetadataRefused, match=message):
        lazy_oidc.Provider(config(server.url, max_bytes=1024)).discovery.get()


@pytest.mark.parametrize("with_backoff", [True, False], ids=["backoff", "builtin-fallback"])
def test_transient_errors_are_retried_within_the_bound(scripted, monkeypatch, with_backoff):
    if with_backoff:
        assert lazy_oidc.backoff is not None, "backoff is installed in both venvs"
    else:
        monkeypatch.setattr(lazy_oidc, "backoff", None)  # as in an image without backoff
    server = scripted((503, {}), (502, {}), (200, document()))
    started = time.monotonic()
    doc = lazy_oidc.Provider(config(server.url, max_time=4.0)).discovery.get()
    assert doc["issuer"] == ISSUER
    assert server.hits == 3
    assert time.monotonic() - started < 4.0


@pytest.mark.parametrize("with_backoff", [True, False], ids=["backoff", "builtin-fallback"])
def test_gives_up_within_the_bound_then_cools_down(scripted, monkeypatch, with_backoff, caplog):
    if not with_backoff:
        monkeypatch.setattr(lazy_oidc, "backoff", None)
    server = scripted((503, {}))
    cache = lazy_oidc.Provider(config(server.url, max_time=1.0, cooldown=30)).discovery
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="lazy_oidc"):
        with pytest.raises(lazy_oidc.ProviderUnavailable) as err:
            cache.get()
    elapsed = time.monotonic() - started
    assert 0.2 < elapsed < 2.0, elapsed
    assert server.hits >= 2  # it did retry
    assert "HTTP 503" in str(err.value)
    hits = server.hits
    started = time.monotonic()
    for _ in range(20):  # a login storm during the cooldown: no request, immediate answer
        with pytest.raises(lazy_oidc.ProviderUnavailable) as err:
            cache.get()
    assert server.hits == hits
    assert time.monotonic() - started < 0.5
    assert 25 <= err.value.retry_after <= 30
    assert count_lines(caplog.text, UNREACHABLE) == 1


def test_connection_refused_is_bounded():
    port = free_port()  # nothing listens there
    cache = lazy_oidc.Provider(config(f"http://127.0.0.1:{port}/.well-known/openid-configuration",
                                      max_time=1.0)).discovery
    started = time.monotonic()
    with pytest.raises(lazy_oidc.ProviderUnavailable, match="connection refused"):
        cache.get()
    assert time.monotonic() - started < 2.0


def test_stale_document_is_served_when_a_refresh_fails(scripted, caplog):
    server = scripted((200, document()), (500, {}))
    cache = lazy_oidc.Provider(config(server.url, ttl=0.2, cooldown=30)).discovery
    first = cache.get()
    time.sleep(0.3)
    with caplog.at_level(logging.INFO, logger="lazy_oidc"):
        assert cache.get() is first  # refresh failed: stale copy, at once
        assert cache.get() is first  # cooldown: no new attempt
    assert server.hits == 2  # one refresh attempt, without retries (a usable copy exists)
    assert count_lines(caplog.text, UNREACHABLE) == 1


def test_single_flight(scripted):
    server = scripted((200, document(), 0.5))
    cache = lazy_oidc.Provider(config(server.url)).discovery
    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(results) == 8 and all(r is results[0] for r in results)
    assert server.hits == 1


def test_health_logs_one_line_down_and_one_line_back(scripted, caplog):
    server = scripted((503, {}))
    cache = lazy_oidc.Provider(config(server.url, max_time=0.2, cooldown=0)).discovery
    with caplog.at_level(logging.INFO, logger="lazy_oidc"):
        for _ in range(3):
            with pytest.raises(lazy_oidc.ProviderUnavailable):
                cache.get()
        server.steps = [(200, document())]  # the provider is back
        cache.get()
        cache.get()
    assert count_lines(caplog.text, UNREACHABLE) == 1
    assert count_lines(caplog.text, BACK) == 1


def test_jwks_must_have_a_keys_list(scripted):
    server = scripted((200, {"keys": "nope"}))
    jwks = lazy_oidc.Provider(config("http://127.0.0.1:9/unused")).jwks(server.url)
    with pytest.raises(lazy_oidc.MetadataRefused, match="'keys' list"):
        jwks.get()


def test_unknown_kid_refresh_is_rate_limited(scripted):
    server = scripted((200, {"keys": [{"kid": "a"}]}), (200, {"keys": [{"kid": "b"}]}))
    jwks = lazy_oidc.Provider(config("http://127.0.0.1:9/unused", cooldown=30)).jwks(server.url)
    assert jwks.get()["keys"][0]["kid"] == "a"
    assert jwks.get(refresh=True, min_age=30)["keys"][0]["kid"] == "a"  # fetched just now: no refresh
    assert server.hits == 1
    assert jwks.get(refresh=True, min_age=0)["keys"][0]["kid"] == "b"
    assert server.hits == 2


def test_select_jwk():
    keys = [{"kid": "enc", "use": "enc"}, {"kid": "k1", "alg": "RS256"}, {"kid": "k2"}]
    assert lazy_oidc.select_jwk(keys, {"kid": "k1", "alg": "RS256"})["kid"] == "k1"
    assert lazy_oidc.select_jwk(keys, {"kid": "k1", "alg": "ES256"}) is None  # alg pinned by the key
    assert lazy_oidc.select_jwk(keys, {"kid": "zz", "alg": "RS256"}) is None
    assert lazy_oidc.select_jwk(keys, {"alg": "RS256"}) is None  # no kid, several keys
    assert lazy_oidc.select_jwk([{"kid": "only"}], {"alg": "RS256"})["kid"] == "only"
    assert lazy_oidc.select_jwk(keys, {"kid": "zz", "alg": "RS256"}, verify_kid=False)["kid"] == "k1"


def test_lazy_endpoint_needs_no_network_for_bool_repr_pickle():
    endpoint = lazy_oidc.LazyEndpoint("jwks_uri")
    # No settings, no provider: resolving would fail; these must not resolve.
    assert endpoint is not None and bool(endpoint) is True
    assert "jwks_uri" in repr(endpoint)
    assert not callable(endpoint)  # django-configurations calls callables
    assert pickle.loads(pickle.dumps(endpoint)) == endpoint
    assert getattr(endpoint, "_mask_wrapped", "absent") == "absent"  # Django's LazyObject probes this
    assert endpoint not in (None, "")
    assert endpoint != "https://idp.example.test/jwks"


def test_settings_overrides_switch_on_and_keep_explicit_values():
    current = {
        "OIDC_OP_URL": ISSUER,
        "OIDC_OP_TOKEN_ENDPOINT": "https://explicit.example.test/token",
        "OIDC_OP_AUTHORIZATION_ENDPOINT": None,
        "OIDC_OP_JWKS_ENDPOINT": "",
        "AUTHENTICATION_BACKENDS": ["django.contrib.auth.backends.ModelBackend",
                                    "core.authentication.backends.OIDCAuthenticationBackend"],
        "OIDC_CALLBACK_CLASS": "core.authentication.views.OIDCAuthenticationCallbackView",
        "MIDDLEWARE": ["a.Middleware"],
        "REST_FRAMEWORK": {"DEFAULT_AUTHENTICATION_CLASSES": (
            "mozilla_django_oidc.contrib.drf.OIDCAuthentication",
            "rest_framework.authentication.SessionAuthentication"), "PAGE_SIZE": 20},
    }
    out = lazy_oidc.settings_overrides(current.get, {"OIDC_DISCOVERY_COOLDOWN": "3"})
    assert "OIDC_OP_TOKEN_ENDPOINT" not in out  # explicit wins
    assert isinstance(out["OIDC_OP_AUTHORIZATION_ENDPOINT"], lazy_oidc.LazyEndpoint)
    assert out["OIDC_OP_JWKS_ENDPOINT"].key == "jwks_uri"
    assert out["OIDC_OP_LOGOUT_ENDPOINT"].soft is True
    assert "OIDC_OP_INTROSPECTION_ENDPOINT" not in out  # resource server off
    assert out["AUTHENTICATION_BACKENDS"] == [
        "django.contrib.auth.backends.ModelBackend", "lazy_oidc.OIDCAuthenticationBackend",
        "core.authentication.backends.OIDCAuthenticationBackend"]
    assert out["LAZY_OIDC_BASE_BACKEND"] == "core.authentication.backends.OIDCAuthenticationBackend"
    assert out["OIDC_DRF_AUTH_BACKEND"] == "lazy_oidc.OIDCAuthenticationBackend"
    assert out["OIDC_CALLBACK_CLASS"] == "lazy_oidc.OIDCAuthenticationCallbackView"
    assert out["MIDDLEWARE"] == ["a.Middleware", "lazy_oidc.ProviderUnavailableMiddleware"]
    assert out["REST_FRAMEWORK"]["DEFAULT_AUTHENTICATION_CLASSES"][0] == "lazy_oidc.OIDCAuthentication"
    assert out["REST_FRAMEWORK"]["PAGE_SIZE"] == 20
    assert current["REST_FRAMEWORK"]["DEFAULT_AUTHENTICATION_CLASSES"][0].startswith("mozilla")  # not mutated
    assert out["OIDC_DISCOVERY_COOLDOWN"] == 3.0
    # Applying twice changes nothing more.
    again = lazy_oidc.settings_overrides({**current, **out}.get, {})
    for name in ("AUTHENTICATION_BACKENDS", "MIDDLEWARE", "OIDC_CALLBACK_CLASS", "REST_FRAMEWORK",
                 "OIDC_OP_AUTHORIZATION_ENDPOINT"):
        assert name not in again, name


def test_settings_overrides_off_switches():
    assert lazy_oidc.settings_overrides({"OIDC_OP_URL": None}.get, {}) == {}
    off = {"OIDC_DISCOVERY_ENABLED": "false"}
    assert lazy_oidc.settings_overrides({"OIDC_OP_URL": ISSUER}.get, off) == {}
    with pytest.raises(lazy_oidc.ImproperlyConfigured, match="OIDC_DISCOVERY_MAX_TIME"):
        lazy_oidc.settings_overrides({"OIDC_OP_URL": ISSUER}.get, {"OIDC_DISCOVERY_MAX_TIME": "soon"})


# ------------------------------------------------------------------------------------------------
# End to end: real provider process + mini Drive under gunicorn
# ------------------------------------------------------------------------------------------------
def robust_env(provider, **extra):
    env = {
        "OIDC_OP_URL": provider.url,
        "OIDC_DISCOVERY_ALLOW_HTTP": "true",
        "OIDC_RP_CLIENT_SECRET": SECRET,
        "OIDC_DISCOVERY_MAX_TIME": "1.5",
        "OIDC_DISCOVERY_COOLDOWN": "1",
    }
    env.update(extra)
    return env


def explicit_endpoints(provider):
    return {
        "OIDC_OP_AUTHORIZATION_ENDPOINT": provider.url + "/oauth2/authorize",
        "OIDC_OP_TOKEN_ENDPOINT": provider.url + "/oauth2/token",
        "OIDC_OP_USER_ENDPOINT": provider.url + "/userinfo",
        "OIDC_OP_JWKS_ENDPOINT": provider.url + "/jwks",
    }


@pytest.fixture
def procs(tmp_path):
    started = []

    def track(obj):
        started.append(obj)
        return obj

    yield track
    for obj in reversed(started):
        obj.stop()


def assert_unavailable(response):
    assert response.status_code == 503, (response.status_code, response.text[:300])
    assert int(response.headers["Retry-After"]) >= 1
    assert "temporarily unavailable" in response.text
    assert "Traceback" not in response.text


def assert_logged_in(browser):
    me = browser.me()
    assert me.status_code == 200, (me.status_code, me.text[:300])
    assert me.json()["email"] == "alice@example.org"


def test_outage_lifecycle(tmp_path, procs):
    """Provider down at boot -> 503; provider starts -> login without restarting Django; provider down
    again -> cached metadata keeps the login redirect working and sessions work; logs; no secret."""
    provider = procs(ProviderProcess(tmp_path))  # not started: down at boot
    django = procs(DjangoServer(tmp_path, robust_env(provider)).start())
    pid = django.proc.pid

    # Down at boot: Django is up, health endpoints 200, login 503 + Retry-After (HTML for browsers).
    assert django.get("/__lbheartbeat__").status_code == 200
    assert django.get("/__heartbeat__").status_code == 200
    browser = Browser(django)
    page = browser.get("/api/v1.0/authenticate/", headers={"Accept": "text/html"})
    assert_unavailable(page)
    assert page.headers["Content-Type"].startswith("text/html")
    assert_unavailable(browser.start_login())  # within the cooldown: immediate
    # DRF with a bearer token needs userinfo: 503 too (not 500).
    assert_unavailable(django.get("/api/v1.0/users/me/", headers={"Authorization": "Bearer abc"}))
    assert django.get("/api/v1.0/users/me/").status_code in (401, 403)  # anonymous API: no provider needed
    assert provider.requests() == []

    # The provider starts on the same port: login succeeds, same Django process.
    provider.start()
    time.sleep(1.1)  # cooldown
    assert browser.login().headers["Location"] == "/logged-in/"
    assert_logged_in(browser)
    first = provider.backend_requests()
    assert sorted(p for _m, p in first) == sorted(
        ["/.well-known/openid-configuration", "/jwks", "/oauth2/token", "/userinfo"])

    # Steady state: 2 requests per login (token + userinfo).
    before = len(provider.requests())
    second = Browser(django)
    assert second.login().headers["Location"] == "/logged-in/"
    assert provider.backend_requests(before) == [("POST", "/oauth2/token"), ("GET", "/userinfo")]
    assert_logged_in(second)

    # Provider down again: sessions unaffected, login redirect from cached metadata, callback 503.
    provider.stop()
    assert_logged_in(browser)
    assert_logged_in(second)
    third = Browser(django)
    start = third.start_login()
    assert start.status_code == 302
    assert start.headers["Location"].startswith(provider.url + "/oauth2/authorize?")
    state = query_param(start.headers["Location"], "state")
    assert_unavailable(third.get(f"/api/v1.0/callback/?code=whatever&state={state}"))
    assert django.get("/__lbheartbeat__").status_code == 200

    # Back again: login works again after the cooldown.
    provider.start()
    time.sleep(1.1)
    fourth = Browser(django)
    assert fourth.login().headers["Location"] == "/logged-in/"
    assert_logged_in(fourth)
    assert django.proc.pid == pid and django.proc.poll() is None

    log = django.log()
    assert count_lines(log, UNREACHABLE) == 2, log
    assert count_lines(log, BACK) == 2, log
    assert SECRET not in log
    assert "Internal Server Error" not in log  # no 500 anywhere in the scenario


def test_requests_per_login_ours_vs_plain_mozilla(tmp_path, procs):
    """Steady state: ours costs the provider 2 requests per login, plain mozilla-django-oidc 3. Also:
    nothing reaches the provider at start, on `manage.py check`, nor when DRF instantiates backends."""
    provider = procs(ProviderProcess(tmp_path).start())

    ours = procs(DjangoServer(tmp_path, robust_env(provider)).start())
    ours.manage("check")
    celery = subprocess.run(  # the celery worker's start: Drive's celery app, task autodiscovery
        [sys.executable, "-c", "from drive.celery_app import app; app.loader.import_default_modules();"
         "import lazy_oidc; print('resolved' if lazy_oidc._provider else 'lazy')"],
        env=ours.env, cwd=MINIDRIVE, capture_output=True, text=True, timeout=120, check=True)
    assert celery.stdout.strip() == "lazy", celery.stderr[-2000:]
    for _ in range(5):  # DRF builds OIDCAuthentication + backend on every API request
        assert ours.get("/api/v1.0/users/me/").status_code in (401, 403)
        basic = {"Authorization": "Basic Zm9vOmJhcg=="}
        assert ours.get("/api/v1.0/items/", headers=basic).status_code in (401, 403)
    assert provider.requests() == [], "the provider was contacted before any login"

    plain_env = {"OIDC_RP_CLIENT_SECRET": SECRET, **explicit_endpoints(provider)}
    plain = procs(DjangoServer(tmp_path, plain_env, settings_module="drive.settings").start())

    counts = {}
    for name, server in (("ours", ours), ("plain", plain)):
        per_login = []
        for _ in range(3):
            before = len(provider.requests())
            browser = Browser(server)
            assert browser.login().headers["Location"] == "/logged-in/"
            assert_logged_in(browser)
            per_login.append(len(provider.backend_requests(before)))
        counts[name] = per_login
    print(f"\nprovider requests per login (mozilla-django-oidc {mozilla_django_oidc.__version__}): {counts}",
          file=sys.stderr)
    assert counts["ours"] == [4, 2, 2]  # discovery + JWKS once, then token + userinfo
    assert counts["plain"] == [3, 3, 3]  # token + JWKS + userinfo, every time
    assert SECRET not in ours.log() and SECRET not in plain.log()


def test_explicit_endpoints_still_win(tmp_path, procs):
    provider = procs(ProviderProcess(tmp_path).start())
    dead = f"http://127.0.0.1:{free_port()}/.well-known/openid-configuration"  # nothing listens
    env = robust_env(provider, OIDC_OP_DISCOVERY_URL=dead, **explicit_endpoints(provider))
    django = procs(DjangoServer(tmp_path, env).start())
    browser = Browser(django)
    assert browser.login().headers["Location"] == "/logged-in/"
    assert_logged_in(browser)
    assert ("GET", "/.well-known/openid-configuration") not in provider.requests()
    assert UNREACHABLE not in django.log()


def test_issuer_mismatch_is_refused_and_logged(tmp_path, procs):
    provider = procs(ProviderProcess(tmp_path).start())
    env = robust_env(provider, OIDC_OP_URL=provider.url + "/realms/drive",
                     OIDC_OP_DISCOVERY_URL=provider.url + "/.well-known/openid-configuration")
    django = procs(DjangoServer(tmp_path, env).start())
    browser = Browser(django)
    assert_unavailable(browser.start_login())
    time.sleep(1.1)
    assert_unavailable(browser.start_login())
    log = django.log()
    assert count_lines(log, r"ERROR OIDC metadata refused: issuer mismatch.*possible mix-up") == 1, log
    assert provider.url + "/realms/drive" in log
    assert provider.backend_requests() == [("GET", "/.well-known/openid-configuration")] * 2


def test_document_without_jwks_uri_is_a_clear_error(tmp_path, procs):
    provider = procs(ProviderProcess(tmp_path, omit=["jwks_uri"]).start())
    django = procs(DjangoServer(tmp_path, robust_env(provider)).start())
    assert_unavailable(Browser(django).start_login())
    assert "lacks the required 'jwks_uri'" in django.log()


def test_sessions_survive_switching_the_addon_on_and_off(tmp_path, procs):
    """Sessions name Drive's backend path, so neither rollout nor rollback logs users out."""
    provider = procs(ProviderProcess(tmp_path).start())
    data = tmp_path / "shared-data"
    plain_env = {"OIDC_RP_CLIENT_SECRET": SECRET, **explicit_endpoints(provider)}
    plain = DjangoServer(tmp_path, plain_env, settings_module="drive.settings", data=data).start()
    before_rollout = Browser(plain)
    before_rollout.login()
    assert_logged_in(before_rollout)
    plain.stop()

    ours = procs(DjangoServer(tmp_path, robust_env(provider), data=data).start())
    before_rollout.django = ours
    assert_logged_in(before_rollout)  # rollout keeps the session
    after_rollout = Browser(ours)
    after_rollout.login()
    assert_logged_in(after_rollout)
    ours.stop()

    back = procs(DjangoServer(tmp_path, plain_env, settings_module="drive.settings", data=data).start())
    after_rollout.django = back
    assert_logged_in(after_rollout)  # rollback keeps it too
