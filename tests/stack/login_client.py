"""Headless OIDC authorization-code login against a deployed Drive backend.

Runs INSIDE the backend container (``docker exec -i <backend> python3 - ARGS < login_client.py``):
the identity provider must be reached under the same name by the backend and by this client
(its issuer and endpoints follow the name it is reached by), and the backend container is the
one place that resolves it exactly as the backend does. Needs Python 3.9+ and ``requests``
(Drive's image ships both). Prints one JSON object on stdout; exit 0 when the login worked and
``GET <me-path>`` answered 200, else 1.

Flow: GET https://<host><login-path> (sent to --backend with ``Host`` and ``X-Forwarded-Proto``,
as the reverse proxy would) -> redirects to the provider's authorize page -> the login form is
filled (``sub`` for oidc-provider-mock; ``username``/``password`` for Keycloak-style forms) and
posted -> redirects to the backend's callback -> GET <me-path> with the session cookie.

Backend cookies are kept by hand: the public origin is https, the hop to the backend is plain
http inside the container, and a ``requests`` cookie jar would never send a ``Secure`` cookie
over it. Query strings are left out of the printed steps (they carry codes and state).
"""

import argparse
import json
import sys
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import requests

USER_FIELDS = ("sub", "username", "login", "email")
PASSWORD_FIELDS = ("password",)


class _Forms(HTMLParser):
    """Collect the forms of a page: action, method, and named inputs with their values."""

    def __init__(self):
        super().__init__()
        self.forms = []
        self._current = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self._current = {
                "action": attrs.get("action") or "",
                "method": (attrs.get("method") or "get").lower(),
                "inputs": {},
                "text_fields": [],
            }
            self.forms.append(self._current)
        elif tag == "input" and self._current is not None and attrs.get("name"):
            name = attrs["name"]
            kind = (attrs.get("type") or "text").lower()
            if kind in ("submit", "button", "image", "reset"):
                return
            if kind in ("checkbox", "radio") and "checked" not in attrs:
                return
            self._current["inputs"][name] = attrs.get("value") or ""
            if kind in ("text", "email", "password"):
                self._current["text_fields"].append(name)

    def handle_endtag(self, tag):
        if tag == "form":
            self._current = None


def _pick_login_form(html):
    """The first form with a user (or password) text field, or None."""
    parser = _Forms()
    parser.feed(html)
    for form in parser.forms:
        if any(name in USER_FIELDS + PASSWORD_FIELDS for name in form["text_fields"]):
            return form
    return None


class Client:
    """Two cookie stores: a normal session for the provider, a dict for the backend."""

    def __init__(self, args):
        self.args = args
        self.public_host = args.host_header
        self.backend = args.backend.rstrip("/")
        self.backend_cookies = {}
        self.idp = requests.Session()
        self.steps = []

    def _is_backend(self, url):
        host = urlsplit(url).netloc
        return host == self.public_host

    def request(self, method, url, data=None):
        """One hop, redirects not followed; backend URLs are sent to --backend."""
        parts = urlsplit(url)
        if self._is_backend(url):
            target = self.backend + (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            resp = requests.request(
                method,
                target,
                data=data,
                headers={"Host": self.public_host, "X-Forwarded-Proto": self.args.proto},
                cookies=self.backend_cookies,
                allow_redirects=False,
                timeout=self.args.timeout,
            )
            self.backend_cookies.update(resp.cookies.get_dict())
            where = "backend"
        else:
            resp = self.idp.request(method, url, data=data, allow_redirects=False, timeout=self.args.timeout)
            where = "provider"
        self.steps.append(f"{method} {where} {parts.netloc}{parts.path} -> {resp.status_code}")
        return resp

    def login(self):
        """Run the whole flow; return the JSON-able result."""
        args = self.args
        origin = f"{args.proto}://{self.public_host}"
        url = origin + args.login_path
        resp = self.request("GET", url)
        forms_posted = 0
        for _ in range(args.max_hops):
            if resp.is_redirect or resp.status_code in (301, 302, 303, 307, 308):
                location = resp.headers.get("Location", "")
                if not location:
                    return self._fail("redirect without Location")
                url = urljoin(url, location)
                resp = self.request("GET", url)
                continue
            if self._is_backend(url):
                break  # landed back on the backend (after the callback)
            if resp.status_code != 200:
                return self._fail(f"provider answered {resp.status_code}: {resp.text[:300]}")
            form = _pick_login_form(resp.text)
            if form is None or forms_posted >= 3:
                return self._fail("no login form on the provider's page")
            data = dict(form["inputs"])
            for name in form["text_fields"]:
                if name in USER_FIELDS:
                    data[name] = args.user
                elif name in PASSWORD_FIELDS:
                    data[name] = args.password
            action = urljoin(url, form["action"]) if form["action"] else url
            forms_posted += 1
            url = action
            resp = self.request(form["method"].upper(), action, data=data)
        else:
            return self._fail("too many hops")

        me = self.request("GET", origin + args.me_path)
        result = {"ok": me.status_code == 200, "me_status": me.status_code, "steps": self.steps}
        try:
            result["me"] = me.json()
        except ValueError:
            result["me_body"] = me.text[:300]
        if not result["ok"]:
            result["error"] = f"GET {args.me_path} answered {me.status_code}"
        return result

    def _fail(self, why):
        return {"ok": False, "error": why, "steps": self.steps}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="http://127.0.0.1:8000", help="where the backend listens")
    parser.add_argument("--host-header", required=True, help="public host name (Django ALLOWED_HOSTS)")
    parser.add_argument("--proto", default="https", help="X-Forwarded-Proto the proxy would send")
    parser.add_argument("--login-path", default="/api/v1.0/authenticate/")
    parser.add_argument("--me-path", default="/api/v1.0/users/me/")
    parser.add_argument("--user", default="alice")
    parser.add_argument("--password", default="")
    parser.add_argument("--timeout", type=float, default=15.0, help="seconds per request")
    parser.add_argument("--max-hops", type=int, default=15)
    args = parser.parse_args(argv)
    try:
        result = Client(args).login()
    except requests.RequestException as exc:
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(result, default=str))
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
