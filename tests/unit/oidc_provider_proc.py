"""Test helper: run oidc-provider-mock (a real authlib OIDC provider) as its own process on loopback.

Usage: python oidc_provider_proc.py --port PORT --log FILE [--omit KEY ...]

Same provider as ``python -m oidc_provider_mock`` (discovery, authorization-code flow, RS256 JWKS,
userinfo, end_session; any client id/secret accepted; the authorize page takes a form POST ``sub=``),
served by werkzeug's threaded server on 127.0.0.1 only, with two test-only additions:

* every request is appended to FILE as ``METHOD PATH`` (one line, flushed), so a test counts exactly
  what reached the provider, across restarts on the same port;
* ``--omit KEY`` removes KEY from the discovery document (to test incomplete metadata);
* ID tokens carry the signing key's ``kid`` in their header, as Keycloak's do (oidc-provider-mock
  0.3.4 leaves it out, and mozilla-django-oidc's default OIDC_VERIFY_KID then refuses every token);
  ``--no-kid`` keeps the provider's own behaviour.

The predefined user ``alice`` has the claims email=alice@example.org, first_name, last_name.
"""

import argparse
import json
import os
import threading

from werkzeug.serving import make_server

WELL_KNOWN = "/.well-known/openid-configuration"


class RequestLog:
    """WSGI middleware: log each request line, optionally trim the discovery document."""

    def __init__(self, app, path, omit):
        self.app = app
        self.path = path
        self.omit = set(omit)
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self.lock, open(self.path, "a", encoding="utf-8") as fh:
            fh.write(f"{environ['REQUEST_METHOD']} {environ.get('PATH_INFO', '')}\n")
            fh.flush()
        if environ.get("PATH_INFO") != WELL_KNOWN or not self.omit:
            return self.app(environ, start_response)
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        body = b"".join(self.app(environ, capture))
        document = json.loads(body)
        for key in self.omit:
            document.pop(key, None)
        body = json.dumps(document).encode()
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(body))))
        start_response(captured["status"], headers)
        return [body]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--omit", action="append", default=[])
    parser.add_argument("--no-kid", action="store_true")
    args = parser.parse_args()

    os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"  # plain http on loopback
    from oidc_provider_mock import User, app
    from oidc_provider_mock import _app as provider_internals

    if not args.no_kid:
        plain = provider_internals.OpenIDCode.get_jwt_config

        def with_kid(self, *a, **kw):
            config = plain(self, *a, **kw)
            kid = config.get("key", {}).get("kid")
            return {**config, "kid": kid} if kid else config

        provider_internals.OpenIDCode.get_jwt_config = with_kid

    provider = app(user_claims=[User(sub="alice", claims={
        "email": "alice@example.org", "first_name": "Alice", "last_name": "Liddell"})])
    server = make_server("127.0.0.1", args.port, RequestLog(provider, args.log, args.omit), threaded=True)
    print(f"oidc provider listening on http://127.0.0.1:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
