"""Unit tests of the mini Drive backend (tests/minidrive), the stand-in for Drive v0.21.1's backend.

Settings that django-configurations resolves at import time (every value with an explicit
``environ_name``) are tested in subprocesses with a clean environment. Request-level behaviour runs
in-process through Django's test client with the ``Test`` configuration (SQLite in memory,
LocMemCache). WOPI discovery comes from real HTTP servers on 127.0.0.1.
"""

import base64
import importlib.util
import json
import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

MINIDRIVE = Path(__file__).resolve().parents[2] / "tests" / "minidrive"
if str(MINIDRIVE) not in sys.path:
    sys.path.insert(0, str(MINIDRIVE))

# In-process Django: the Test configuration. setdefault, so a teammate's module that configured the
# same project first keeps its choices; OIDC_OP_JWKS_ENDPOINT must be set or every API request fails
# (mozilla-django-oidc refuses RS256 without it), it is never contacted here.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "drive.settings")
os.environ.setdefault("DJANGO_CONFIGURATION", "Test")
os.environ.setdefault("OIDC_OP_JWKS_ENDPOINT", "http://127.0.0.1:9/jwks")

import configurations  # noqa: E402

configurations.setup()

from django.conf import settings  # noqa: E402
from django.core.cache import cache  # noqa: E402
from django.core.files.uploadedfile import SimpleUploadedFile  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client, override_settings  # noqa: E402

pytestmark = pytest.mark.skipif(
    settings.ROOT_URLCONF != "drive.urls", reason="another Django project is configured in this process"
)


# --------------------------------------------------------------------------- helpers


def clean_env(**extra):
    """Environment for a subprocess: no DJANGO_/OIDC_/WOPI_ variables leak in from the test runner."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DJANGO", "OIDC_", "WOPI_", "DB_", "REDIS"))
    }
    env.pop("MEDIA_ROOT", None)
    env.pop("CELERY_SKIP_CHECKS", None)
    env["PYTHONPATH"] = str(MINIDRIVE)
    env["DJANGO_SETTINGS_MODULE"] = "drive.settings"
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_py(code, env, timeout=120):
    """Run Python code in the mini Drive directory; return the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=MINIDRIVE,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def manage(args, env, timeout=120):
    """Run manage.py with the venv's Python."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=MINIDRIVE,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def last_json(proc):
    """The JSON document printed on the last stdout line of a subprocess (fails with its stderr)."""
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


class Discovery:
    """A real HTTP server on 127.0.0.1 answering every GET with a set status and body."""

    def __init__(self, status=200, body=b"", content_type="text/xml"):
        self.status, self.body, self.content_type = status, body, content_type
        self.paths = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                outer.paths.append(self.path)
                self.send_response(outer.status)
                self.send_header("Content-Type", outer.content_type)
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}/hosting/discovery"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def b64_int(value):
    """Base64 of an integer's big-endian bytes (how WOPI discovery carries RSA numbers)."""
    return base64.b64encode(value.to_bytes((value.bit_length() + 7) // 8, "big")).decode()


@pytest.fixture(scope="module")
def rsa_keys():
    """Two RSA keys (current and old proof keys) and their PEM public keys."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    keys = [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2)]
    pems = [
        k.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        for k in keys
    ]
    return keys, pems


def discovery_xml(base="http://collabora:9980", proof=None, net_zone=True):
    """Collabora-like discovery: edit/view actions by extension and one edit by mimetype (ext="")."""
    apps = f"""
        <app name="writer">
          <action default="true" ext="odt" name="edit" urlsrc="{base}/browser/h1/cool.html?"/>
          <action ext="doc" name="view" urlsrc="{base}/browser/h1/cool.html?"/>
          <action ext="DOCX" name="edit" urlsrc="{base}/browser/h1/cool.html?"/>
        </app>
        <app name="draw">
          <action ext="png" name="edit" urlsrc="{base}/browser/h1/cool.html?"/>
        </app>
        <app name="application/vnd.oasis.opendocument.spreadsheet">
          <action default="true" ext="" name="edit" urlsrc="{base}/browser/h1/cool.html?"/>
        </app>
        <app name="image/svg+xml">
          <action ext="" name="edit" urlsrc="{base}/browser/h1/cool.html?"/>
        </app>"""
    zone = f'<net-zone name="external-http">{apps}</net-zone>' if net_zone else apps
    proof_xml = ""
    if proof:
        (cur, old), _pems = proof
        cn, on = cur.public_key().public_numbers(), old.public_key().public_numbers()
        proof_xml = (
            f'<proof-key value="x" modulus="{b64_int(cn.n)}" exponent="{b64_int(cn.e)}" '
            f'oldvalue="y" oldmodulus="{b64_int(on.n)}" oldexponent="{b64_int(on.e)}"/>'
        )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><wopi-discovery>{zone}{proof_xml}</wopi-discovery>'.encode()
    )


def wopi_settings(**clients):
    """override_settings for the WOPI clients, shaped as post_setup builds them."""
    return override_settings(
        WOPI_CLIENTS=list(clients),
        WOPI_CLIENTS_CONFIGURATION={
            name: {"discovery_url": url, "mimetypes": {}, "extensions": {}, "options": {}}
            for name, url in clients.items()
        },
    )


@pytest.fixture(scope="module")
def migrated():
    """The in-memory SQLite database with every migration applied."""
    call_command("migrate", verbosity=0, interactive=False)


@pytest.fixture(autouse=True)
def jwks_configured():
    """Keep API requests working even if another module set Django up without a JWKS endpoint."""
    with override_settings(OIDC_OP_JWKS_ENDPOINT=settings.OIDC_OP_JWKS_ENDPOINT or "http://127.0.0.1:9/jwks"):
        yield


@pytest.fixture(autouse=True)
def fresh_wopi_state():
    """Empty cache, and Drive's module-level default WOPI dict restored (the task mutates it)."""
    from wopi.tasks import configure_wopi

    cache.clear()
    saved = json.dumps(configure_wopi.WOPI_DEFAULT_CONFIGURATION)
    yield
    configure_wopi.WOPI_DEFAULT_CONFIGURATION.clear()
    configure_wopi.WOPI_DEFAULT_CONFIGURATION.update(json.loads(saved))
    cache.clear()


@pytest.fixture
def user(migrated):
    from core.models import User

    u = User(sub=f"alice-{time.monotonic_ns()}", email="alice@example.org")
    u.set_unusable_password()
    u.save()
    return u


@pytest.fixture
def client(user, tmp_path):
    c = Client()
    c.force_login(user)
    with override_settings(MEDIA_ROOT=str(tmp_path / "media")):
        yield c


def upload(client, name, content_type, data=b"content"):
    r = client.post("/api/v1.0/items/", {"file": SimpleUploadedFile(name, data, content_type=content_type)})
    assert r.status_code == 201, r.content
    return r.json()


# --------------------------------------------------------------------------- settings (subprocesses)

SHOW_SETTINGS = """
    import json, configurations
    configurations.setup()
    from django.conf import settings as s
    from django.core.cache import caches
    print(json.dumps({
        "caches": {k: [v["BACKEND"], v.get("LOCATION"), v.get("KEY_PREFIX")] for k, v in s.CACHES.items()},
        "db": [s.DATABASES["default"]["ENGINE"], str(s.DATABASES["default"]["NAME"])],
        "auth": s.AUTHENTICATION_BACKENDS,
        "drf_auth": list(s.REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"]),
        "allowed": s.ALLOWED_HOSTS, "debug": s.DEBUG, "media": s.MEDIA_ROOT, "static": s.STATIC_ROOT,
        "oidc": {k: getattr(s, k) for k in dir(s) if k.startswith("OIDC_") and isinstance(
            getattr(s, k), (str, int, bool, type(None), list))},
        "login_redirect": s.LOGIN_REDIRECT_URL,
        "wopi": s.WOPI_CLIENTS_CONFIGURATION, "wopi_clients": s.WOPI_CLIENTS,
        "wopi_exp": s.WOPI_CONFIGURATION_CACHE_EXPIRATION,
        "cron": [s.WOPI_CONFIGURATION_CRONTAB_MINUTE, s.WOPI_CONFIGURATION_CRONTAB_HOUR,
                 s.WOPI_CONFIGURATION_CRONTAB_DAY_OF_MONTH, s.WOPI_CONFIGURATION_CRONTAB_MONTH_OF_YEAR],
        "ssl_redirect": getattr(s, "SECURE_SSL_REDIRECT", False), "broker": s.CELERY_BROKER_URL,
        "eager": getattr(s, "CELERY_TASK_ALWAYS_EAGER", False),
        "middleware": s.MIDDLEWARE, "apps": s.INSTALLED_APPS, "env": s.ENVIRONMENT,
        "wopi_key": caches["default"].make_key("wopi_configuration"),
    }))
"""


def test_test_configuration_defaults():
    out = last_json(run_py(SHOW_SETTINGS, clean_env(DJANGO_CONFIGURATION="Test")))
    assert out["caches"]["default"][0] == "django.core.cache.backends.locmem.LocMemCache"
    assert out["db"] == ["django.db.backends.sqlite3", ":memory:"]
    assert out["eager"] is True and out["env"] == "test"
    assert out["auth"] == [
        "django.contrib.auth.backends.ModelBackend",
        "core.authentication.backends.OIDCAuthenticationBackend",
    ]
    assert out["drf_auth"] == [
        "mozilla_django_oidc.contrib.drf.OIDCAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ]
    oidc = out["oidc"]
    assert oidc["OIDC_RP_SIGN_ALGO"] == "RS256"
    assert oidc["OIDC_RP_CLIENT_ID"] == "drive"
    assert oidc["OIDC_RP_SCOPES"] == "openid email"
    assert oidc["OIDC_TIMEOUT"] == 3
    for name in (
        "OIDC_OP_JWKS_ENDPOINT",
        "OIDC_OP_AUTHORIZATION_ENDPOINT",
        "OIDC_OP_TOKEN_ENDPOINT",
        "OIDC_OP_USER_ENDPOINT",
        "OIDC_OP_LOGOUT_ENDPOINT",
        "OIDC_OP_URL",
        "OIDC_OP_INTROSPECTION_ENDPOINT",
        "OIDC_RP_CLIENT_SECRET",
    ):
        assert oidc[name] is None, name
    assert out["login_redirect"] is None
    assert out["media"] == "/data/media" and out["static"] == "/data/static"
    assert out["wopi_clients"] == [] and out["wopi"] == {}
    assert out["wopi_exp"] == 86400
    assert out["cron"] == [0, 3, "*", "*"]
    assert out["broker"] == "redis://redis:6379/0"
    assert "dockerflow.django.middleware.DockerflowMiddleware" in out["middleware"]
    assert "dockerflow.django" in out["apps"] and "mozilla_django_oidc" in out["apps"]


def test_production_configuration_from_env(tmp_path):
    env = clean_env(
        DJANGO_CONFIGURATION="Production",
        DJANGO_SECRET_KEY="k" * 50,
        DJANGO_ALLOWED_HOSTS="drive.example.org,backend",
        REDIS_URL="redis://127.0.0.1:1/2",
        DB_ENGINE="django.db.backends.sqlite3",
        DB_NAME=tmp_path / "db.sqlite3",
        WOPI_CLIENTS="collabora",
        WOPI_COLLABORA_DISCOVERY_URL="http://collabora:9980/hosting/discovery",
        WOPI_CONFIGURATION_CRONTAB_HOUR="*/2",
        OIDC_OP_JWKS_ENDPOINT="http://idp:9400/jwks",
        OIDC_RP_CLIENT_SECRET="s3cret",
        DJANGO_CELERY_BROKER_URL="redis://127.0.0.1:1/3",
        MEDIA_ROOT=tmp_path / "media",
    )
    out = last_json(run_py(SHOW_SETTINGS, env))
    assert out["env"] == "production" and out["debug"] is False
    # django-redis like Drive when installed, else Django's own Redis cache (same key format).
    redis_backend = (
        "django_redis.cache.RedisCache"
        if importlib.util.find_spec("django_redis")
        else "django.core.cache.backends.redis.RedisCache"
    )
    assert out["caches"]["default"] == [redis_backend, "redis://127.0.0.1:1/2", "drive"]
    assert out["caches"]["session"][:2] == [redis_backend, "redis://127.0.0.1:1/2"]
    assert out["wopi_key"] == "drive:1:wopi_configuration"  # the key as stored in Redis
    assert out["db"] == ["django.db.backends.sqlite3", str(tmp_path / "db.sqlite3")]
    assert out["allowed"][:2] == ["drive.example.org", "backend"]
    assert out["allowed"][2] == socket.gethostbyname(socket.gethostname())
    assert out["ssl_redirect"] is True
    assert out["wopi_clients"] == ["collabora"]
    assert out["wopi"]["collabora"]["discovery_url"] == "http://collabora:9980/hosting/discovery"
    assert out["cron"][1] == "*/2"
    assert out["oidc"]["OIDC_OP_JWKS_ENDPOINT"] == "http://idp:9400/jwks"
    assert out["oidc"]["OIDC_RP_CLIENT_SECRET"] == "s3cret"
    assert out["broker"] == "redis://127.0.0.1:1/3"
    assert out["media"] == str(tmp_path / "media")


def test_production_requires_secret_key_and_discovery_urls(tmp_path):
    base = {"DJANGO_CONFIGURATION": "Production", "DB_ENGINE": "django.db.backends.sqlite3"}
    # Django checks SECRET_KEY lazily: setup succeeds, the first use (sessions, CSRF, signing) fails.
    code = (
        "import configurations; configurations.setup(); from django.conf import settings; settings.SECRET_KEY"
    )
    no_key = run_py(code, clean_env(**base))
    assert no_key.returncode != 0 and "The SECRET_KEY setting must not be empty" in no_key.stderr

    no_url = run_py(SHOW_SETTINGS, clean_env(**base, DJANGO_SECRET_KEY="k" * 50, WOPI_CLIENTS="collabora"))
    assert no_url.returncode != 0
    assert "WOPI_COLLABORA_DISCOVERY_URL" in no_url.stderr


def test_production_heartbeats_exempt_from_https_redirect(tmp_path):
    env = clean_env(
        DJANGO_CONFIGURATION="Production",
        DJANGO_SECRET_KEY="k" * 50,
        DJANGO_ALLOWED_HOSTS="backend",
        DB_ENGINE="django.db.backends.sqlite3",
        DB_NAME=tmp_path / "db.sqlite3",
        MINIDRIVE_CACHE_DIR=tmp_path / "cache",
        OIDC_OP_JWKS_ENDPOINT="http://127.0.0.1:9/jwks",
    )
    code = """
        import json, configurations
        configurations.setup()
        from django.core.management import call_command
        call_command("migrate", verbosity=0)
        from django.test import Client
        c = Client()
        out = {}
        for host in ("backend", "evil.example"):
            for path in ("/__lbheartbeat__", "/__heartbeat__", "/api/v1.0/users/me/"):
                r = c.get(path, HTTP_HOST=host)
                out[host + path] = [r.status_code, r.get("Location")]
        r = c.get("/api/v1.0/users/me/", HTTP_HOST="backend", HTTP_X_FORWARDED_PROTO="https")
        out["https-me"] = [r.status_code, None]
        print(json.dumps(out))
    """
    out = last_json(run_py(code, env))
    assert out["backend/__lbheartbeat__"] == [200, None]
    assert out["backend/__heartbeat__"][0] == 200
    assert out["backend/api/v1.0/users/me/"] == [301, "https://backend/api/v1.0/users/me/"]
    assert out["https-me"][0] == 401
    # A Host outside ALLOWED_HOSTS is refused even on the load-balancer heartbeat.
    assert out["evil.example/__lbheartbeat__"][0] == 400


@pytest.mark.skipif(not importlib.util.find_spec("psycopg"), reason="psycopg not installed")
def test_heartbeat_fails_when_database_unreachable(tmp_path):
    """/__heartbeat__ runs Django's checks: PostgreSQL down gives 500; /__lbheartbeat__ stays 200."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = clean_env(
        DJANGO_CONFIGURATION="Production",
        DJANGO_SECRET_KEY="k" * 50,
        DJANGO_ALLOWED_HOSTS="backend",
        DB_HOST="127.0.0.1",
        DB_PORT=port,
        MINIDRIVE_CACHE_DIR=tmp_path / "cache",
    )
    code = """
        import json, configurations
        configurations.setup()
        from django.test import Client
        c = Client(HTTP_HOST="backend")
        print(json.dumps([c.get("/__lbheartbeat__").status_code, c.get("/__heartbeat__").status_code]))
    """
    assert last_json(run_py(code, env)) == [200, 500]


def test_migrate_on_sqlite_file_and_migrations_committed(tmp_path):
    db = tmp_path / "drive.sqlite3"
    env = clean_env(DJANGO_CONFIGURATION="Test", DB_NAME=db)
    mig = manage(["migrate", "--noinput"], env)
    assert mig.returncode == 0, mig.stderr
    tables = {r[0] for r in sqlite3.connect(db).execute("select name from sqlite_master where type='table'")}
    assert {"drive_user", "drive_item", "django_session"} <= tables
    check = manage(["makemigrations", "--check", "--dry-run"], env)
    assert check.returncode == 0, check.stdout + check.stderr


# --------------------------------------------------------------------------- heartbeat, auth, API


def test_heartbeats_with_allowed_host(migrated):
    c = Client()
    assert c.get("/__lbheartbeat__").status_code == 200
    r = c.get("/__heartbeat__")
    assert r.status_code == 200
    assert r.json()["status"] in ("ok", "warning")
    assert c.get("/__lbheartbeat__", HTTP_HOST="not-allowed.example").status_code == 400


def test_users_me_requires_authentication(user):
    anonymous = Client()
    assert anonymous.get("/api/v1.0/users/me/").status_code == 401
    c = Client()
    c.force_login(user)
    r = c.get("/api/v1.0/users/me/")
    assert r.status_code == 200
    assert r.json()["email"] == "alice@example.org" and r.json()["id"] == str(user.id)


def test_oidc_wiring_is_drives():
    from core.authentication.backends import OIDCAuthenticationBackend
    from django.contrib.auth import get_backends
    from django.core.exceptions import ImproperlyConfigured
    from lasuite.oidc_login.backends import OIDCAuthenticationBackend as LaSuite

    assert issubclass(OIDCAuthenticationBackend, LaSuite)
    assert any(isinstance(b, OIDCAuthenticationBackend) for b in get_backends())
    # mozilla reads the OP settings when a backend is built: RS256 without a JWKS endpoint is refused,
    # and DRF builds one for every API request.
    with override_settings(OIDC_OP_JWKS_ENDPOINT=None):
        with pytest.raises(ImproperlyConfigured, match="RS256"):
            OIDCAuthenticationBackend()
        c = Client(raise_request_exception=False)
        assert c.get("/api/v1.0/users/me/").status_code == 500


def test_oidc_urls_under_api_prefix(migrated):
    from django.urls import reverse

    assert reverse("oidc_authentication_init") == "/api/v1.0/authenticate/"
    assert reverse("oidc_authentication_callback") == "/api/v1.0/callback/"
    assert reverse("oidc_logout_custom") == "/api/v1.0/logout/"
    with override_settings(OIDC_OP_AUTHORIZATION_ENDPOINT="http://127.0.0.1:9/authorize"):
        r = Client().get("/api/v1.0/authenticate/")
    assert r.status_code == 302
    assert r["Location"].startswith("http://127.0.0.1:9/authorize?")
    assert "client_id=drive" in r["Location"] and "scope=openid+email" in r["Location"]


def test_upload_writes_under_media_root(client, tmp_path):
    item = upload(client, "report.odt", "application/vnd.oasis.opendocument.text", b"hello drive")
    stored = tmp_path / "media" / "item" / item["id"] / "report.odt"
    assert stored.read_bytes() == b"hello drive"
    assert item["upload_state"] == "ready" and item["size"] == 11
    assert Client().post("/api/v1.0/items/", {}).status_code == 401


# --------------------------------------------------------------------------- WOPI configuration task


def test_configure_wopi_clients_populates_cache(rsa_keys):
    from wopi.tasks.configure_wopi import WOPI_CONFIGURATION_CACHE_KEY, configure_wopi_clients

    assert WOPI_CONFIGURATION_CACHE_KEY == "wopi_configuration"
    with Discovery(body=discovery_xml(proof=rsa_keys)) as srv, wopi_settings(collabora=srv.url):
        configure_wopi_clients()
        assert srv.paths == ["/hosting/discovery"]
    conf = cache.get("wopi_configuration")
    launch = "http://collabora:9980/browser/h1/cool.html?"
    assert conf["extensions"] == {
        "odt": {"launch_url": launch, "client": "collabora"},
        "DOCX": {"launch_url": launch, "client": "collabora"},  # stored as discovered; lookup lowers
    }
    assert conf["mimetypes"] == {
        "application/vnd.oasis.opendocument.spreadsheet": {"launch_url": launch, "client": "collabora"},
    }
    _keys, pems = rsa_keys
    assert conf["collabora"]["proof_keys"] == {"public_key": pems[0], "old_public_key": pems[1]}


def test_configure_wopi_clients_without_proof_key_and_expiration():
    from wopi.tasks.configure_wopi import configure_wopi_clients

    with (
        Discovery(body=discovery_xml()) as srv,
        wopi_settings(collabora=srv.url),
        override_settings(WOPI_CONFIGURATION_CACHE_EXPIRATION=1),
    ):
        configure_wopi_clients()
    assert cache.get("wopi_configuration")["collabora"] == {"proof_keys": {}}
    time.sleep(1.2)
    assert cache.get("wopi_configuration") is None


def test_configure_wopi_clients_deletes_first_then_raises_on_404():
    from wopi.tasks.configure_wopi import configure_wopi_clients

    cache.set("wopi_configuration", {"mimetypes": {}, "extensions": {"odt": {"launch_url": "old"}}})
    with Discovery(status=404, body=b"not found") as srv, wopi_settings(collabora=srv.url):
        with pytest.raises(RuntimeError, match="status code 404"):
            configure_wopi_clients()
    assert cache.get("wopi_configuration") is None


def test_configure_wopi_clients_raises_without_net_zone():
    from wopi.tasks.configure_wopi import configure_wopi_clients

    with Discovery(body=discovery_xml(net_zone=False)) as srv, wopi_settings(collabora=srv.url):
        with pytest.raises(RuntimeError, match="net-zone"):
            configure_wopi_clients()
    assert cache.get("wopi_configuration") is None


def test_configure_wopi_clients_connection_refused_propagates():
    import requests
    from wopi.tasks.configure_wopi import configure_wopi_clients

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with wopi_settings(collabora=f"http://127.0.0.1:{port}/hosting/discovery"):
        with pytest.raises(requests.ConnectionError):
            configure_wopi_clients()


def test_configure_wopi_clients_second_client_failure_keeps_first():
    from wopi.tasks.configure_wopi import configure_wopi_clients

    with (
        Discovery(body=discovery_xml("http://collabora:9980")) as ok,
        Discovery(status=503) as bad,
        wopi_settings(collabora=ok.url, onlyoffice=bad.url),
    ):
        with pytest.raises(RuntimeError, match="onlyoffice"):
            configure_wopi_clients()
    conf = cache.get("wopi_configuration")
    assert set(conf) == {"mimetypes", "extensions", "collabora"}
    assert conf["extensions"]["odt"]["client"] == "collabora"


def test_default_dict_is_mutated_like_drives():
    """Drive mutates its module-level default: after the key is gone the old entries still show."""
    from wopi.tasks.configure_wopi import WOPI_DEFAULT_CONFIGURATION, configure_wopi_clients
    from wopi.utils import get_wopi_configuration

    with Discovery(body=discovery_xml()) as srv, wopi_settings(collabora=srv.url):
        configure_wopi_clients()
    cache.delete("wopi_configuration")
    assert "odt" in WOPI_DEFAULT_CONFIGURATION["extensions"]
    assert "odt" in get_wopi_configuration()["extensions"]


def test_trigger_command_runs_eagerly_in_test(tmp_path):
    with Discovery(body=discovery_xml()) as srv:
        env = clean_env(
            DJANGO_CONFIGURATION="Test", WOPI_CLIENTS="collabora", WOPI_COLLABORA_DISCOVERY_URL=srv.url
        )
        proc = manage(["trigger_wopi_configuration"], env)
        assert proc.returncode == 0, proc.stderr
        assert srv.paths == ["/hosting/discovery"]


def test_trigger_command_only_queues_in_production(tmp_path):
    with Discovery(body=discovery_xml()) as srv:
        env = clean_env(
            DJANGO_CONFIGURATION="Production",
            DJANGO_SECRET_KEY="k" * 50,
            DB_ENGINE="django.db.backends.sqlite3",
            DB_NAME=tmp_path / "db.sqlite3",
            MINIDRIVE_CACHE_DIR=tmp_path / "cache",
            DJANGO_CELERY_BROKER_URL="memory://",
            WOPI_CLIENTS="collabora",
            WOPI_COLLABORA_DISCOVERY_URL=srv.url,
        )
        proc = manage(["trigger_wopi_configuration"], env)
        assert proc.returncode == 0, proc.stderr
        assert srv.paths == []


BEAT = """
    import json
    from drive.celery_app import app
    app.loader.init_worker()  # what `celery beat` does first (apps/beat.py init_loader), then finalize
    app.finalize()
    entry = app.conf.beat_schedule.get("configure_wopi_clients")
    print(json.dumps({
        "entry": None if entry is None else [entry["task"], str(entry["schedule"])],
        "registered": "wopi.tasks.configure_wopi.configure_wopi_clients" in app.tasks,
    }))
"""


def test_beat_schedule_from_crontab_settings(tmp_path):
    env = clean_env(
        DJANGO_CONFIGURATION="Test",
        WOPI_CONFIGURATION_CRONTAB_MINUTE="30",
        WOPI_CONFIGURATION_CRONTAB_HOUR="4",
    )
    out = last_json(run_py(BEAT, env))
    assert out["registered"] is True
    assert out["entry"][0] == "wopi.tasks.configure_wopi.configure_wopi_clients"
    assert out["entry"][1] == "<crontab: 30 4 * * * (m/h/dM/MY/d)>"


def test_beat_schedule_needs_the_system_checks(tmp_path):
    """The WOPI task module is imported only through the URL check: skipping checks loses it."""
    env = clean_env(DJANGO_CONFIGURATION="Test", CELERY_SKIP_CHECKS="1")
    out = last_json(run_py(BEAT, env))
    assert out == {"entry": None, "registered": False}


# --------------------------------------------------------------------------- open for edit (WOPI entry)


def test_open_for_edit_400_without_configuration(client):
    item = upload(client, "report.odt", "application/vnd.oasis.opendocument.text")
    assert item["is_wopi_supported"] is False
    r = client.get(f"/api/v1.0/items/{item['id']}/wopi/")
    assert r.status_code == 400
    assert "does not suport WOPI" in r.content.decode()


def test_open_for_edit_200_after_discovery(client):
    from wopi.tasks.configure_wopi import configure_wopi_clients

    odt = upload(client, "report.odt", "application/vnd.oasis.opendocument.text")
    docx = upload(client, "LETTER.DOCX", "application/octet-stream")
    ods = upload(client, "sheet", "application/vnd.oasis.opendocument.spreadsheet")
    png = upload(client, "picture.png", "image/png")
    with Discovery(body=discovery_xml("http://collabora:9980")) as srv, wopi_settings(collabora=srv.url):
        configure_wopi_clients()

    r = client.get(f"/api/v1.0/items/{odt['id']}/wopi/")
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["launch_url"] == (
        "http://collabora:9980/browser/h1/cool.html"
        f"?WOPISrc=%2Fapi%2Fv1.0%2Fwopi%2Ffiles%2F{odt['id']}%2F&closebutton=false&lang=en-us"
    )
    assert body["access_token"] and body["access_token_ttl"] > time.time() * 1000
    assert client.get(f"/api/v1.0/items/{odt['id']}/").json()["is_wopi_supported"] is True
    # Upper-case DOCX file: the discovery's "DOCX" key is not matched by the lower-cased lookup.
    assert client.get(f"/api/v1.0/items/{docx['id']}/wopi/").status_code == 400
    # No extension: matched by mimetype.
    assert client.get(f"/api/v1.0/items/{ods['id']}/wopi/").status_code == 200
    # png is in WOPI_EXCLUDED_EXTENSIONS.
    assert client.get(f"/api/v1.0/items/{png['id']}/wopi/").status_code == 400


def test_open_for_edit_uses_wopi_src_base_url(client):
    item = upload(client, "report.odt", "application/vnd.oasis.opendocument.text")
    cache.set(
        "wopi_configuration",
        {
            "mimetypes": {},
            "extensions": {"odt": {"launch_url": "http://c/x.html?a=<ui=UI_LLCC&>&", "client": "c"}},
        },
    )
    with override_settings(WOPI_SRC_BASE_URL="http://backend:8000"):
        r = client.get(f"/api/v1.0/items/{item['id']}/wopi/")
    assert r.status_code == 200
    assert r.json()["launch_url"] == (
        f"http://c/x.html?WOPISrc=http%3A%2F%2Fbackend%3A8000%2Fapi%2Fv1.0%2Fwopi%2Ffiles%2F{item['id']}%2F"
        "&closebutton=false&lang=en-us&ui=en-us"
    )


# --------------------------------------------------------------------------- gunicorn, as the image runs it


def test_gunicorn_config_values():
    import runpy

    conf = runpy.run_path(str(MINIDRIVE / "docker" / "gunicorn" / "drive.py"))
    assert conf["bind"] == ["0.0.0.0:8000"]
    assert (conf["workers"], conf["timeout"], conf["graceful_timeout"]) == (3, 90, 90)
    assert conf["python_path"] == "/app" and conf["name"] == "drive"


def test_gunicorn_serves_heartbeat(tmp_path):
    import requests

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gunicorn = Path(sys.executable).with_name("gunicorn")
    env = clean_env(
        DJANGO_CONFIGURATION="Test", HOME=tmp_path, OIDC_OP_JWKS_ENDPOINT="http://127.0.0.1:9/jwks"
    )
    env.pop("XDG_RUNTIME_DIR", None)
    proc = subprocess.Popen(
        [
            str(gunicorn),
            "-c",
            str(MINIDRIVE / "docker" / "gunicorn" / "drive.py"),
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            "1",
            "drive.wsgi:application",
        ],
        cwd=MINIDRIVE,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = requests.get(f"http://127.0.0.1:{port}/__lbheartbeat__", timeout=2)
                break
            except requests.ConnectionError:
                assert proc.poll() is None, proc.stdout.read().decode()
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert r.status_code == 200
        assert requests.get(f"http://127.0.0.1:{port}/api/v1.0/users/me/", timeout=5).status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=30)
