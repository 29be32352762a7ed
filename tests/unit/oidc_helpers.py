"""Test helpers for lazy_oidc: a real OIDC provider process, the mini Drive under gunicorn, a browser.

Everything listens on and talks to 127.0.0.1 only. Processes are started with the interpreter running
the tests (``sys.executable``), so the same test module exercises whichever venv runs it.
"""

import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

import requests

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
MINIDRIVE = ROOT / "tests" / "minidrive"
ENTRYPOINTS = ROOT / "entrypoints"
LOOPBACK = "127.0.0.1"

# Requests the *backend* sends to the provider (the browser's /oauth2/authorize is not counted).
BACKEND_PATHS = ("/.well-known/openid-configuration", "/jwks", "/oauth2/token", "/userinfo")


# Variables other tests of the session may have put in os.environ; the servers here start without them.
_FOREIGN = ("OIDC_", "DJANGO_", "DB_", "WOPI_", "LOGIN_", "LOGOUT_", "MINIDRIVE_", "CELERY_")
_FOREIGN_NAMES = {"REDIS_URL", "DATABASE_URL", "MEDIA_ROOT", "DATA_DIR", "PYTHONPATH"}


def clean_environ():
    return {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN) and k not in _FOREIGN_NAMES}


def free_port():
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def wait_port(port, timeout, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {LOOPBACK}:{port} after {timeout} s")


def _stop(proc):
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


class ProviderProcess:
    """oidc-provider-mock in its own process (tests/unit/oidc_provider_proc.py) on a fixed port."""

    def __init__(self, workdir, port=None, omit=(), kid=True):
        self.port = port or free_port()
        self.log = Path(workdir) / f"provider-{self.port}.requests"
        self.log.touch()
        self.out = Path(workdir) / f"provider-{self.port}.out"
        self.omit = omit
        self.kid = kid
        self.proc = None

    @property
    def url(self):
        return f"http://{LOOPBACK}:{self.port}"

    def start(self):
        cmd = [sys.executable, str(HERE / "oidc_provider_proc.py"),
               "--port", str(self.port), "--log", str(self.log)]
        for key in self.omit:
            cmd += ["--omit", key]
        if not self.kid:
            cmd.append("--no-kid")
        with open(self.out, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        wait_port(self.port, 30, self.proc)
        return self

    def stop(self):
        _stop(self.proc)
        self.proc = None

    def requests(self):
        """Every request line the provider received so far: [("GET", "/jwks"), ...]."""
        lines = self.log.read_text(encoding="utf-8").splitlines()
        return [tuple(line.split(" ", 1)) for line in lines if line]

    def backend_requests(self, since=0):
        return [r for r in self.requests()[since:] if r[1] in BACKEND_PATHS]


class DjangoServer:
    """The mini Drive (tests/minidrive) under gunicorn, one sync worker, on a free loopback port."""

    def __init__(self, workdir, env, settings_module="drive_robust_settings", configuration="Production",
                 data=None):
        self.port = free_port()
        self.workdir = Path(workdir)
        self.out = self.workdir / f"django-{self.port}.log"
        data = Path(data) if data else self.workdir / f"data-{self.port}"
        data.mkdir(exist_ok=True)
        self.data = data
        self.env = {
            **clean_environ(),
            "PYTHONPATH": os.pathsep.join([str(ENTRYPOINTS), str(MINIDRIVE)]),
            "DJANGO_SETTINGS_MODULE": settings_module,
            "DJANGO_CONFIGURATION": configuration,
            "DJANGO_SECRET_KEY": "test-secret-key-for-lazy-oidc",
            "DJANGO_ALLOWED_HOSTS": LOOPBACK,
            "DB_ENGINE": "django.db.backends.sqlite3",
            "DB_NAME": str(data / "db.sqlite3"),
            "MINIDRIVE_CACHE_DIR": str(data / "cache"),
            "MEDIA_ROOT": str(data / "media"),
            "DATA_DIR": str(data),
            "LOGIN_REDIRECT_URL": "/logged-in/",
            "LOGIN_REDIRECT_URL_FAILURE": "/login-failed/",
            "LOGOUT_REDIRECT_URL": "/logged-out/",
            "OIDC_TIMEOUT": "2",
            "PYTHONWARNINGS": "ignore",
            **env,
        }
        self.proc = None

    @property
    def url(self):
        return f"http://{LOOPBACK}:{self.port}"

    def manage(self, *args):
        return subprocess.run([sys.executable, str(MINIDRIVE / "manage.py"), *args], env=self.env,
                              cwd=MINIDRIVE, capture_output=True, text=True, timeout=120, check=True)

    def start(self):
        self.manage("migrate", "--noinput")
        cmd = [sys.executable, "-m", "gunicorn", "drive.wsgi:application",
               "--bind", f"{LOOPBACK}:{self.port}", "--workers", "1", "--timeout", "60",
               "--no-control-socket", "--error-logfile", "-"]
        with open(self.out, "ab") as out:
            self.proc = subprocess.Popen(cmd, env=self.env, cwd=MINIDRIVE, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        wait_port(self.port, 60, self.proc)
        return self

    def stop(self):
        _stop(self.proc)
        self.proc = None

    def log(self):
        return self.out.read_text(encoding="utf-8", errors="replace")

    def get(self, path, **kwargs):
        headers = {"X-Forwarded-Proto": "https", **kwargs.pop("headers", {})}
        return requests.get(self.url + path, headers=headers, allow_redirects=False, timeout=30, **kwargs)


class Browser:
    """A user agent for the code flow. Drive's Production settings sit behind a TLS proxy: requests carry
    X-Forwarded-Proto: https and the https:// URLs Django builds are followed over http on loopback;
    cookies are kept by hand because Production marks them Secure."""

    def __init__(self, django):
        self.django = django
        self.cookies = {}

    def get(self, path, **kwargs):
        response = self.django.get(path, cookies=dict(self.cookies), **kwargs)
        for cookie in response.cookies:
            self.cookies[cookie.name] = cookie.value
        return response

    def start_login(self):
        """GET the login view; returns the response (302 to the provider, or 503...)."""
        return self.get("/api/v1.0/authenticate/")

    def consent(self, authorize_url, sub="alice"):
        """POST the provider's authorize form; returns the callback path + query Django built."""
        assert authorize_url.startswith(f"http://{LOOPBACK}:"), authorize_url
        response = requests.post(authorize_url, data={"sub": sub}, allow_redirects=False, timeout=30)
        assert response.status_code in (302, 303), (response.status_code, response.text[:500])
        callback = urlsplit(response.headers["Location"])
        assert callback.netloc == f"{LOOPBACK}:{self.django.port}", callback
        return urlunsplit(("", "", callback.path, callback.query, ""))

    def login(self):
        """Full authorization-code login; returns the callback response (302 to LOGIN_REDIRECT_URL)."""
        start = self.start_login()
        assert start.status_code == 302, (start.status_code, start.text[:500])
        callback = self.consent(start.headers["Location"])
        return self.get(callback)

    def me(self):
        return self.get("/api/v1.0/users/me/")


def query_param(url, name):
    return parse_qs(urlsplit(url).query).get(name, [None])[0]


def count_lines(text, pattern):
    return len(re.findall(pattern, text))


class ScriptedServer:
    """A loopback HTTP server thread answering GETs from a script of (status, body, delay) steps.

    The last step repeats. ``hits`` counts requests. Used by the pure tests of lazy_oidc's fetching
    (real sockets, real HTTP; nothing in the client is replaced).
    """

    def __init__(self, steps):
        self.steps = list(steps)
        self.hits = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server API)
                with outer.lock:
                    outer.hits += 1
                    step = outer.steps[min(outer.hits, len(outer.steps)) - 1]
                status, body, delay = (tuple(step) + (0,))[:3]
                if delay:
                    time.sleep(delay)
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://{LOOPBACK}:{self.port}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()
