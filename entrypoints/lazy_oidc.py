"""Lazy, retrying OpenID Connect discovery for La Suite Drive (mozilla-django-oidc + django-lasuite).

Where it runs
    Inside Drive's backend and celery-worker containers, mounted at /opt/robust/lazy_oidc.py and put on
    the path with PYTHONPATH=/opt/robust. It is switched on by drive_robust_settings.py (the settings
    module the recipe selects with DJANGO_SETTINGS_MODULE=drive_robust_settings); any other Django
    project can call ``settings_overrides()`` from its own settings. Nothing in Drive's image changes.

What it needs
    Python >= 3.9, Django, requests, mozilla-django-oidc (4.x or 5.x) and, for Drive's classes,
    django-lasuite: all in Drive's image. ``backoff`` is used when importable (Drive's image has it only
    through posthog). When it is missing a built-in loop with the same policy is used instead
    (exponential delays 0.25 s, 0.5 s, 1 s, 2 s, 2 s... with full jitter, same total time bound): the
    behaviour is the same, only the implementation differs.

Behaviour
    * The backend boots with only the issuer configured (``OIDC_OP_URL``, Drive's existing variable).
      Every ``OIDC_OP_*_ENDPOINT`` setting left empty becomes a ``LazyEndpoint``: a placeholder that is
      not None (so mozilla-django-oidc's RS256 check in the backend's ``__init__`` passes) and that looks
      the provider's metadata up only when it is turned into a string, i.e. where the endpoint is used:
      the login redirect, the token exchange, userinfo, JWKS, logout and django-lasuite's resource
      server. Nothing touches the network at import, settings load, app start or when a backend or view
      is instantiated (DRF builds a backend on every API request). An endpoint set explicitly wins and
      is never replaced.
    * Metadata comes from ``OIDC_OP_DISCOVERY_URL`` (default: issuer + /.well-known/openid-configuration,
      so Keycloak realms work as they are). The fetch retries with exponential backoff and jitter inside
      a total time bound (``OIDC_DISCOVERY_MAX_TIME``), one fetch at a time per process (other threads
      wait for it, or get the stale copy at once when there is one), the result is cached for
      ``OIDC_DISCOVERY_TTL``; when a refresh fails the stale document keeps being served, and after a
      failure no new attempt is made for ``OIDC_DISCOVERY_COOLDOWN`` seconds, so a login storm does not
      hammer a provider that is down.
    * The document is validated like a careful client: a JSON object no larger than
      ``OIDC_DISCOVERY_MAX_BYTES``; ``issuer`` exactly equal to ``OIDC_OP_URL`` (anything else is refused
      and logged as a possible mix-up); the endpoints still needed (authorization, token, userinfo,
      jwks_uri - only those not set explicitly) present; every URL https unless
      ``OIDC_DISCOVERY_ALLOW_HTTP`` is on (for an internal http issuer).
    * The JWKS is cached too (same TTL) and refreshed when a token carries an unknown ``kid`` (at most
      once per cooldown period), so a login costs the provider 2 requests in steady state (token +
      userinfo) instead of mozilla-django-oidc's 3.
    * While the provider is unreachable (or its metadata is refused), the views that need it answer
      503 with ``Retry-After`` and a short message (JSON for API clients) - never a 500, never a
      traceback in the answer; sessions that already exist keep working, health endpoints are
      untouched. The logout view falls back to a local logout when the provider's logout endpoint
      cannot be resolved.
    * Logs (logger ``lazy_oidc``): one INFO line per process when discovery is first needed, one WARNING
      line when the provider becomes unreachable, one INFO line when it is back, one ERROR line per
      distinct refusal of its metadata. URLs are logged without any user:password part; the client
      secret and tokens are never logged.

Known limits
    * Metadata and JWKS are cached per process (each gunicorn worker fetches its own copy once).
    * django-lasuite's resource server (OIDC_RESOURCE_SERVER_ENABLED, off by default in Drive) sets its
      authentication class per view, so this module cannot wrap it: while the provider is unreachable
      its API calls fail as they do today (DRF error), not with the 503 described above.
    * The issuer comparison is exact, as OpenID Connect Discovery requires: OIDC_OP_URL must be the
      issuer string itself (Keycloak: https://host/realms/<realm>, no trailing slash).

Settings read (Django settings; drive_robust_settings fills them from the environment variables of
the same name)
    OIDC_OP_URL                 issuer, compared exactly with the document's ``issuer``. Without it the
                                add-on stays off.
    OIDC_OP_DISCOVERY_URL       default: OIDC_OP_URL + "/.well-known/openid-configuration"
    OIDC_DISCOVERY_ALLOW_HTTP   accept http:// issuer, discovery URL and endpoints (default false)
    OIDC_DISCOVERY_TTL          seconds a document (and a JWKS) is fresh (default 3600)
    OIDC_DISCOVERY_MAX_TIME     total seconds one fetch may spend, retries included (default 5)
    OIDC_DISCOVERY_COOLDOWN     seconds without a new attempt after a failure; also the Retry-After
                                value and the minimum interval between unknown-kid JWKS refreshes
                                (default 10)
    OIDC_DISCOVERY_MAX_BYTES    largest accepted document or JWKS body (default 262144; a Django
                                setting only, no environment variable)
    OIDC_DISCOVERY_ENABLED      (environment only) "false" leaves Drive's settings untouched
    OIDC_TIMEOUT, OIDC_VERIFY_SSL, OIDC_PROXY
                                Drive's existing settings, used for the metadata fetches as well
    OIDC_OP_*_ENDPOINT          explicit endpoints (win over discovery)
    LAZY_OIDC_BASE_BACKEND, LAZY_OIDC_BASE_CALLBACK_CLASS, LAZY_OIDC_BASE_DRF_AUTHENTICATION,
    LAZY_OIDC_SESSION_BACKEND   written by settings_overrides(): the classes this module subclasses and
                                the backend path kept in sessions (see below)

Classes, built on first use (module ``__getattr__``) because their bases import Django models
    lazy_oidc.OIDCAuthenticationBackend       subclass of Drive's backend: cached JWKS, unreachable
                                              provider turned into ProviderUnavailable. Listed just
                                              before Drive's own entry, which stays (sessions name it);
                                              after it used an authorization code without success it
                                              raises PermissionDenied so Django does not hand the spent
                                              code to Drive's entry as well
    lazy_oidc.OIDCAuthenticationCallbackView  subclass of Drive's callback view: sessions keep naming
                                              Drive's own backend, so sessions survive switching the
                                              add-on on or off
    lazy_oidc.OIDCAuthentication              subclass of mozilla's DRF authentication: 503 instead of 500
    lazy_oidc.ProviderUnavailableMiddleware   turns DiscoveryError into the 503 answer
"""

from __future__ import annotations

import base64
import json
import logging
import math
import os
import random
import threading
import time
from urllib.parse import urlsplit, urlunsplit

import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

try:  # backoff is in Drive's image only through posthog: keep a fallback (see the docstring).
    import backoff
except ImportError:  # pragma: no cover - the tests run the fallback loop with backoff set to None
    backoff = None

log = logging.getLogger("lazy_oidc")

MODULE = __name__
BACKEND_PATH = f"{MODULE}.OIDCAuthenticationBackend"
CALLBACK_PATH = f"{MODULE}.OIDCAuthenticationCallbackView"
DRF_AUTH_PATH = f"{MODULE}.OIDCAuthentication"
MIDDLEWARE_PATH = f"{MODULE}.ProviderUnavailableMiddleware"

MOZILLA_BACKEND = "mozilla_django_oidc.auth.OIDCAuthenticationBackend"
MOZILLA_CALLBACK = "mozilla_django_oidc.views.OIDCAuthenticationCallbackView"
MOZILLA_DRF_AUTH = "mozilla_django_oidc.contrib.drf.OIDCAuthentication"

# (Django setting, discovery key, required in the document when lazy, soft)
# "soft": when it cannot be resolved the endpoint is "" (falsy), e.g. logout falls back to a local one.
ENDPOINTS = (
    ("OIDC_OP_AUTHORIZATION_ENDPOINT", "authorization_endpoint", True, False),
    ("OIDC_OP_TOKEN_ENDPOINT", "token_endpoint", True, False),
    ("OIDC_OP_USER_ENDPOINT", "userinfo_endpoint", True, False),
    ("OIDC_OP_JWKS_ENDPOINT", "jwks_uri", True, False),
    ("OIDC_OP_LOGOUT_ENDPOINT", "end_session_endpoint", False, True),
    ("OIDC_OP_INTROSPECTION_ENDPOINT", "introspection_endpoint", False, False),
)

WELL_KNOWN = "/.well-known/openid-configuration"

DEFAULTS = {
    "OIDC_DISCOVERY_ALLOW_HTTP": False,
    "OIDC_DISCOVERY_TTL": 3600.0,
    "OIDC_DISCOVERY_MAX_TIME": 5.0,
    "OIDC_DISCOVERY_COOLDOWN": 10.0,
    "OIDC_DISCOVERY_MAX_BYTES": 256 * 1024,
}

UNAVAILABLE_MESSAGE = (
    "Sign-in is temporarily unavailable: the identity provider cannot be reached. "
    "Please try again in a moment."
)


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------
class DiscoveryError(requests.exceptions.ConnectionError):
    """The provider cannot be used right now. A requests ConnectionError, so callers that already
    treat network failures keep doing so; ``retry_after`` is a hint in seconds."""

    def __init__(self, message, retry_after=None):
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after

    def __str__(self):
        return self.message


class ProviderUnavailable(DiscoveryError):
    """The provider did not answer usefully (connection refused, timeout, HTTP error)."""


class MetadataRefused(DiscoveryError):
    """The provider answered, but its metadata is not acceptable (issuer mismatch, missing endpoint,
    http without OIDC_DISCOVERY_ALLOW_HTTP, not a JSON object, too large)."""


class _Transient(Exception):
    """An attempt failed in a way worth retrying within the time bound."""


# --------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------
def redact_url(url):
    """The URL without any user:password part (for logs)."""
    try:
        parts = urlsplit(str(url))
    except ValueError:
        return "<unparsable URL>"
    if "@" in parts.netloc:
        parts = parts._replace(netloc=parts.netloc.rsplit("@", 1)[1])
    return urlunsplit(parts)


def _describe(exc):
    """A short, secret-free description of a requests failure."""
    if isinstance(exc, requests.exceptions.Timeout):
        return "timed out"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS error"
    if isinstance(exc, requests.exceptions.ConnectionError):
        text = str(exc)
        for hint in ("Connection refused", "Name or service not known", "No route to host",
                     "Temporary failure in name resolution", "Connection reset", "Network is unreachable"):
            if hint in text:
                return f"connection failed ({hint.lower()})"
        return "connection failed"
    return type(exc).__name__


def parse_bool(value, name="value"):
    """Environment-style boolean."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("", "0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name}: expected a boolean (true/false), got {value!r}")


def _parse_seconds(value, name):
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ImproperlyConfigured(f"{name}: expected a number of seconds, got {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise ImproperlyConfigured(f"{name}: expected a non-negative number of seconds, got {value!r}")
    return number


def _sleep(seconds):
    time.sleep(seconds)


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------
class DiscoveryConfig:
    """Everything a fetch needs, read once (from Django settings by ``from_settings``)."""

    def __init__(self, issuer, discovery_url=None, allow_http=False, ttl=3600.0, max_time=5.0,
                 cooldown=10.0, max_bytes=256 * 1024, timeout=3.0, verify=True, proxies=None,
                 required=("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri")):
        if not issuer:
            raise ImproperlyConfigured("lazy_oidc: OIDC_OP_URL (the issuer) is not set")
        self.issuer = str(issuer)
        self.discovery_url = str(discovery_url or (self.issuer.rstrip("/") + WELL_KNOWN))
        self.allow_http = bool(allow_http)
        self.ttl = float(ttl)
        self.max_time = float(max_time)
        self.cooldown = float(cooldown)
        self.max_bytes = int(max_bytes)
        self.timeout = float(timeout) if timeout else 3.0
        self.verify = verify
        self.proxies = proxies
        self.required = tuple(required)

    @classmethod
    def from_settings(cls):
        def get(name):
            value = getattr(settings, name, None)
            return DEFAULTS.get(name) if value in (None, "") else value

        required = [key for name, key, needed, _soft in ENDPOINTS
                    if needed and isinstance(getattr(settings, name, None), LazyEndpoint)]
        proxies = getattr(settings, "OIDC_PROXY", None)
        return cls(
            issuer=getattr(settings, "OIDC_OP_URL", None),
            discovery_url=getattr(settings, "OIDC_OP_DISCOVERY_URL", None) or None,
            allow_http=parse_bool(get("OIDC_DISCOVERY_ALLOW_HTTP"), "OIDC_DISCOVERY_ALLOW_HTTP"),
            ttl=_parse_seconds(get("OIDC_DISCOVERY_TTL"), "OIDC_DISCOVERY_TTL"),
            max_time=_parse_seconds(get("OIDC_DISCOVERY_MAX_TIME"), "OIDC_DISCOVERY_MAX_TIME"),
            cooldown=_parse_seconds(get("OIDC_DISCOVERY_COOLDOWN"), "OIDC_DISCOVERY_COOLDOWN"),
            max_bytes=int(get("OIDC_DISCOVERY_MAX_BYTES")),
            timeout=getattr(settings, "OIDC_TIMEOUT", None) or 3.0,
            verify=getattr(settings, "OIDC_VERIFY_SSL", True),
            proxies=proxies if isinstance(proxies, dict) else None,
            required=required,
        )

    def check_url(self, url, what):
        """Refuse a URL that is not absolute https (or http when allowed)."""
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or not parts.netloc or parts.scheme not in ("https", "http"):
            raise MetadataRefused(f"{what} is not an absolute http(s) URL: {redact_url(url)!r}")
        if parts.scheme == "http" and not self.allow_http:
            raise MetadataRefused(
                f"{what} uses http ({redact_url(url)}); https is required unless "
                "OIDC_DISCOVERY_ALLOW_HTTP is set for an internal provider"
            )


# --------------------------------------------------------------------------------------------------
# Provider health: one line when it goes away, one when it is back
# --------------------------------------------------------------------------------------------------
class ProviderHealth:
    def __init__(self):
        self._lock = threading.Lock()
        self.down_since = None

    def down(self, reason):
        with self._lock:
            first = self.down_since is None
            if first:
                self.down_since = time.monotonic()
        if first:
            log.warning(
                "OIDC provider unreachable: %s. Cached metadata is used where there is some; "
                "sign-in answers 503 with Retry-After otherwise. Existing sessions are not affected.",
                reason,
            )

    def up(self):
        with self._lock:
            since, self.down_since = self.down_since, None
        if since is not None:
            log.info("OIDC provider reachable again (unreachable for %.0f s)", time.monotonic() - since)


HEALTH = ProviderHealth()


# --------------------------------------------------------------------------------------------------
# Fetching JSON with a time bound, retries and a size cap
# --------------------------------------------------------------------------------------------------
def fetch_json(url, config, deadline, what):
    """One GET attempt. Raises _Transient (worth retrying), ProviderUnavailable or MetadataRefused."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _Transient("time budget exhausted")
    timeout = max(0.05, min(config.timeout, remaining))
    try:
        response = requests.get(
            url, headers={"Accept": "application/json"}, timeout=(timeout, timeout), stream=True,
            verify=config.verify, proxies=config.proxies,
        )
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        raise _Transient(f"{what} {redact_url(url)}: {_describe(exc)}") from None
    except requests.exceptions.RequestException as exc:
        raise ProviderUnavailable(f"{what} {redact_url(url)}: {_describe(exc)}") from None
    with response:
        if response.url != url:  # redirected: the final URL must be acceptable too (no https -> http)
            config.check_url(response.url, f"{what} (after redirects)")
        status = response.status_code
        if status >= 500 or status == 429:
            raise _Transient(f"{what} {redact_url(url)} answered HTTP {status}")
        if status != 200:
            raise ProviderUnavailable(f"{what} {redact_url(url)} answered HTTP {status}")
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > config.max_bytes:
            raise MetadataRefused(f"{what} {redact_url(url)} is larger than {config.max_bytes} bytes")
        body = bytearray()
        try:
            for chunk in response.iter_content(16384):
                body += chunk
                if len(body) > config.max_bytes:
                    raise MetadataRefused(f"{what} {redact_url(url)} is larger than {config.max_bytes} bytes")
                if time.monotonic() > deadline + config.timeout:
                    raise _Transient(f"{what} {redact_url(url)}: body too slow")
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                requests.exceptions.ChunkedEncodingError) as exc:
            raise _Transient(f"{what} {redact_url(url)}: {_describe(exc)}") from None
    try:
        document = json.loads(bytes(body).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise MetadataRefused(f"{what} {redact_url(url)} is not valid JSON") from None
    if not isinstance(document, dict):
        raise MetadataRefused(f"{what} {redact_url(url)} is not a JSON object")
    return document


def fetch_with_retries(url, config, what, retry=True):
    """fetch_json with exponential backoff + full jitter inside config.max_time seconds in total.

    ``retry=False`` makes a single attempt (used to refresh a stale copy: a usable copy exists, so
    nobody is kept waiting). Uses ``backoff`` when importable, else an equivalent loop.
    """
    budget = max(config.max_time, 0.05)
    started = time.monotonic()
    deadline = started + budget
    tries = []  # the message of each failed attempt

    def attempt():
        if tries and time.monotonic() >= deadline:
            raise _Transient(tries[-1])
        try:
            return fetch_json(url, config, deadline, what)
        except _Transient as exc:
            tries.append(str(exc))
            raise

    try:
        if not retry:
            return attempt()
        if backoff is not None:
            retrying = backoff.on_exception(
                backoff.expo, _Transient, max_time=budget, jitter=backoff.full_jitter, logger=None,
                factor=0.25, max_value=2.0,
            )(attempt)
            return retrying()
        delay = 0.25
        while True:
            try:
                return attempt()
            except _Transient:
                remaining = deadline - time.monotonic()
                if remaining <= 0.01:
                    raise
                _sleep(min(random.uniform(0, delay), remaining))  # noqa: S311 (jitter, not crypto)
                delay = min(delay * 2, 2.0)
    except _Transient as exc:
        detail = f" ({len(tries)} attempts in {time.monotonic() - started:.1f} s)" if len(tries) > 1 else ""
        raise ProviderUnavailable(f"{exc}{detail}") from None


def validate_metadata(document, config, source):
    """Return the document if acceptable for ``config``, else raise MetadataRefused (clear message)."""
    issuer = document.get("issuer")
    if issuer != config.issuer:
        raise MetadataRefused(
            f"issuer mismatch: OIDC_OP_URL is {config.issuer!r} but the discovery document at "
            f"{redact_url(source)} says {issuer!r}; refusing it (possible mix-up or misconfiguration: "
            "check OIDC_OP_URL and OIDC_OP_DISCOVERY_URL)"
        )
    config.check_url(issuer, "issuer")
    for key in config.required:
        if not isinstance(document.get(key), str) or not document.get(key):
            raise MetadataRefused(
                f"the discovery document at {redact_url(source)} lacks the required {key!r}; set the "
                "matching OIDC_OP_*_ENDPOINT explicitly or fix the provider"
            )
    for _name, key, _needed, _soft in ENDPOINTS:
        value = document.get(key)
        if value is not None and value != "":
            config.check_url(value, f"{key} in the discovery document")
    return document


def validate_jwks(document, config, source):
    keys = document.get("keys")
    if not isinstance(keys, list) or not all(isinstance(k, dict) for k in keys):
        raise MetadataRefused(f"the JWKS at {redact_url(source)} has no 'keys' list of objects")
    return document


# --------------------------------------------------------------------------------------------------
# A cached JSON resource: TTL, single flight, stale on failure, cooldown
# --------------------------------------------------------------------------------------------------
class CachedDocument:
    def __init__(self, url, config, what, validate):
        self.url = url
        self.config = config
        self.what = what
        self.validate = validate
        self._lock = threading.Lock()
        self.value = None
        self.fetched_at = 0.0
        self.expires_at = 0.0
        self.retry_at = 0.0
        self.last_error = None
        self._logged_refusal = None
        self.fetches = 0  # attempts to load (for diagnostics and tests)

    def _retry_after(self):
        return max(1, math.ceil(self.retry_at - time.monotonic()))

    def get(self, refresh=False, min_age=0.0):
        """The document. ``refresh`` forces a reload unless the copy is younger than ``min_age``."""
        now = time.monotonic()
        value = self.value
        if value is not None:
            fresh = now < self.expires_at
            if (fresh and not refresh) or (refresh and now - self.fetched_at < min_age):
                return value
            if not self._lock.acquire(blocking=False):
                return value  # another thread is refreshing: serve the copy we have
        elif not self._lock.acquire(timeout=self.config.max_time + self.config.timeout + 1):
            raise ProviderUnavailable(f"{self.what}: still waiting for another fetch", self.config.cooldown)
        try:
            now = time.monotonic()
            value = self.value
            if value is not None and (
                    (now < self.expires_at and not refresh) or (refresh and now - self.fetched_at < min_age)):
                return value  # somebody else refreshed while we waited
            if now < self.retry_at:
                if value is not None:
                    return value
                raise type(self.last_error)(self.last_error.message, self._retry_after())
            return self._load(stale=value)
        finally:
            self._lock.release()

    def _load(self, stale):
        self.fetches += 1
        try:
            if isinstance(self.url, str):
                self.config.check_url(self.url, self.what)
            document = fetch_with_retries(self.url, self.config, self.what, retry=stale is None)
            document = self.validate(document, self.config, self.url)
        except DiscoveryError as exc:
            self.retry_at = time.monotonic() + self.config.cooldown
            exc.retry_after = max(1, math.ceil(self.config.cooldown))
            self.last_error = exc
            if isinstance(exc, MetadataRefused):
                if exc.message != self._logged_refusal:
                    self._logged_refusal = exc.message
                    log.error("OIDC metadata refused: %s", exc.message)
            else:
                HEALTH.down(exc.message)
            if stale is not None:
                return stale
            raise
        now = time.monotonic()
        self.value = document
        self.fetched_at = now
        self.expires_at = now + self.config.ttl
        self.retry_at = 0.0
        self.last_error = None
        self._logged_refusal = None
        HEALTH.up()
        return document


class Provider:
    """The discovery document and the JWKS caches of one issuer."""

    def __init__(self, config):
        self.config = config
        self.discovery = CachedDocument(config.discovery_url, config, "discovery document", validate_metadata)
        self._jwks = {}
        self._jwks_lock = threading.Lock()

    def endpoint(self, key, soft=False):
        try:
            value = self.discovery.get().get(key)
        except DiscoveryError:
            if soft:
                return ""
            raise
        if not value:
            if soft:
                return ""
            raise MetadataRefused(
                f"the provider's discovery document has no {key!r}; set the matching OIDC_OP_*_ENDPOINT",
                self.config.cooldown,
            )
        return value

    def jwks(self, url):
        url = str(url)
        with self._jwks_lock:
            cache = self._jwks.get(url)
            if cache is None:
                cache = self._jwks[url] = CachedDocument(url, self.config, "JWKS", validate_jwks)
        return cache


_provider = None
_provider_lock = threading.Lock()


def provider():
    """The process-wide Provider, configured from Django settings at first use."""
    global _provider
    current = _provider
    if current is None:
        with _provider_lock:
            if _provider is None:
                _provider = Provider(DiscoveryConfig.from_settings())
                log.info("OIDC discovery in use for issuer %s (metadata from %s, fetched when first needed)",
                         _provider.config.issuer, redact_url(_provider.config.discovery_url))
            current = _provider
    return current


def reset():
    """Forget every cached document (tests, or after changing settings in-process)."""
    global _provider
    with _provider_lock:
        _provider = None
    HEALTH.down_since = None


# --------------------------------------------------------------------------------------------------
# The lazy settings value
# --------------------------------------------------------------------------------------------------
class LazyEndpoint:
    """Placeholder for an ``OIDC_OP_*_ENDPOINT`` setting; becomes the URL when used as a string.

    ``str()``/``format()``/``+``/str methods resolve it (network at most once per TTL, see Provider).
    ``bool()`` never touches the network for a required endpoint (django-lasuite checks
    ``if not value`` when it instantiates its clients); for a soft one (logout) it resolves, failures
    giving False. ``repr()`` and ``==`` never resolve (a LazyEndpoint equals only an identical
    LazyEndpoint, never a string). It is not callable (django-configurations would call it).
    """

    __slots__ = ("key", "soft")

    def __init__(self, key, soft=False):
        self.key = key
        self.soft = soft

    def resolve(self):
        return provider().endpoint(self.key, soft=self.soft)

    def __str__(self):
        return self.resolve()

    def __format__(self, spec):
        return format(self.resolve(), spec)

    def __bool__(self):
        return bool(self.resolve()) if self.soft else True

    def __add__(self, other):
        return self.resolve() + other

    def __radd__(self, other):
        return other + self.resolve()

    def __eq__(self, other):
        # Never resolves: ``value in (None, "")`` style checks must not reach the network.
        if isinstance(other, LazyEndpoint):
            return (self.key, self.soft) == (other.key, other.soft)
        return NotImplemented

    def __hash__(self):
        return hash(("LazyEndpoint", self.key))

    def __repr__(self):
        return f"<LazyEndpoint {self.key} (from OIDC discovery)>"

    def __reduce__(self):
        return (LazyEndpoint, (self.key, self.soft))

    def __getattr__(self, name):
        # Only str's public methods (.startswith(), .split()...) resolve; any other probe, e.g.
        # Django's getattr(value, "_mask_wrapped", True) on settings values, must not.
        if name not in _STR_METHODS:
            raise AttributeError(name)
        return getattr(self.resolve(), name)


_STR_METHODS = frozenset(name for name in dir(str) if not name.startswith("_"))


# --------------------------------------------------------------------------------------------------
# Settings switch
# --------------------------------------------------------------------------------------------------
def settings_overrides(get, environ=None):
    """The settings to change so the project uses this add-on.

    ``get(name, default)`` reads the project's current settings (e.g. a django-configurations class);
    ``environ`` (default os.environ) supplies OIDC_OP_DISCOVERY_URL, OIDC_DISCOVERY_*. Returns {} when
    OIDC_OP_URL is empty or OIDC_DISCOVERY_ENABLED is false: the project then runs unchanged.
    """
    environ = os.environ if environ is None else environ
    if not parse_bool(environ.get("OIDC_DISCOVERY_ENABLED", "true"), "OIDC_DISCOVERY_ENABLED"):
        return {}
    if not get("OIDC_OP_URL", None):
        return {}
    out = {
        "OIDC_OP_DISCOVERY_URL": (environ.get("OIDC_OP_DISCOVERY_URL") or "").strip() or None,
        "OIDC_DISCOVERY_ALLOW_HTTP": parse_bool(environ.get("OIDC_DISCOVERY_ALLOW_HTTP", ""),
                                                "OIDC_DISCOVERY_ALLOW_HTTP"),
    }
    for name in ("OIDC_DISCOVERY_TTL", "OIDC_DISCOVERY_MAX_TIME", "OIDC_DISCOVERY_COOLDOWN"):
        raw = (environ.get(name) or "").strip()
        out[name] = _parse_seconds(raw, name) if raw else DEFAULTS[name]
    out["OIDC_DISCOVERY_MAX_BYTES"] = (get("OIDC_DISCOVERY_MAX_BYTES", None)
                                       or DEFAULTS["OIDC_DISCOVERY_MAX_BYTES"])

    for name, key, _needed, soft in ENDPOINTS:
        if name == "OIDC_OP_INTROSPECTION_ENDPOINT" and not get("OIDC_RESOURCE_SERVER_ENABLED", False):
            continue
        value = get(name, None)
        if value is None or (isinstance(value, str) and not value.strip()):
            out[name] = LazyEndpoint(key, soft=soft)

    backends = list(get("AUTHENTICATION_BACKENDS", []) or [])
    if BACKEND_PATH not in backends:
        base = get("LAZY_OIDC_BASE_BACKEND", None) or next(
            (path for path in backends if path.rsplit(".", 1)[-1] == "OIDCAuthenticationBackend"), None)
        if base:
            if base in backends:
                # Keep Drive's own path listed right after ours: sessions name it (see the callback view).
                backends.insert(backends.index(base), BACKEND_PATH)
            else:
                backends.append(BACKEND_PATH)
            out["AUTHENTICATION_BACKENDS"] = backends
            out["LAZY_OIDC_BASE_BACKEND"] = base
            out["LAZY_OIDC_SESSION_BACKEND"] = base if base in backends else BACKEND_PATH
            if not get("OIDC_DRF_AUTH_BACKEND", None):
                out["OIDC_DRF_AUTH_BACKEND"] = BACKEND_PATH

    callback = get("OIDC_CALLBACK_CLASS", None) or MOZILLA_CALLBACK
    if callback != CALLBACK_PATH:
        out["LAZY_OIDC_BASE_CALLBACK_CLASS"] = callback
        out["OIDC_CALLBACK_CLASS"] = CALLBACK_PATH

    middleware = list(get("MIDDLEWARE", []) or [])
    if MIDDLEWARE_PATH not in middleware:
        out["MIDDLEWARE"] = [*middleware, MIDDLEWARE_PATH]

    rest = get("REST_FRAMEWORK", None)
    if isinstance(rest, dict):
        classes = list(rest.get("DEFAULT_AUTHENTICATION_CLASSES", ()))
        if MOZILLA_DRF_AUTH in classes:
            classes[classes.index(MOZILLA_DRF_AUTH)] = DRF_AUTH_PATH
            out["REST_FRAMEWORK"] = {**rest, "DEFAULT_AUTHENTICATION_CLASSES": tuple(classes)}
            out["LAZY_OIDC_BASE_DRF_AUTHENTICATION"] = MOZILLA_DRF_AUTH
    return out


# --------------------------------------------------------------------------------------------------
# 503 answer
# --------------------------------------------------------------------------------------------------
def unavailable_response(request, exc):
    from django.http import HttpResponse, JsonResponse

    retry_after = max(1, math.ceil(exc.retry_after or _cooldown()))
    accept = request.headers.get("Accept", "") if request is not None else ""
    if "application/json" in accept or (request is not None and request.path.startswith("/api/")
                                        and "text/html" not in accept):
        response = JsonResponse({"detail": UNAVAILABLE_MESSAGE}, status=503)
    else:
        response = HttpResponse(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Sign-in unavailable</title></head>"
            f"<body><h1>Sign-in unavailable</h1><p>{UNAVAILABLE_MESSAGE}</p></body></html>",
            status=503, content_type="text/html; charset=utf-8",
        )
    response["Retry-After"] = str(retry_after)
    response["Cache-Control"] = "no-store"
    return response


class ProviderUnavailableMiddleware:
    """Answer 503 + Retry-After when a view fails because the provider cannot be used."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, DiscoveryError):
            return unavailable_response(request, exception)
        return None


# --------------------------------------------------------------------------------------------------
# Classes built on first use
# --------------------------------------------------------------------------------------------------
class _ProviderCall:
    """Turn a network failure talking to the provider into ProviderUnavailable, track health."""

    def __init__(self, what):
        self.what = what

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None:
            HEALTH.up()
            return False
        if isinstance(exc, DiscoveryError):
            return False
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)) or (
                isinstance(exc, requests.exceptions.HTTPError) and status is not None and status >= 500):
            reason = f"{self.what}: HTTP {status}" if status else f"{self.what}: {_describe(exc)}"
            HEALTH.down(reason)
            cooldown = _cooldown()
            raise ProviderUnavailable(reason, cooldown) from None
        return False


def _cooldown():
    try:
        return provider().config.cooldown
    except ImproperlyConfigured:
        return DEFAULTS["OIDC_DISCOVERY_COOLDOWN"]


def jose_header(token):
    """The decoded protected header of a compact JWS (no verification)."""
    from django.core.exceptions import SuspiciousOperation

    try:
        if isinstance(token, bytes):
            token = token.decode("ascii")
        head = token.split(".", 1)[0]
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, TypeError, AttributeError):
        raise SuspiciousOperation("Malformed token header") from None
    if not isinstance(header, dict):
        raise SuspiciousOperation("Malformed token header")
    return header


def select_jwk(keys, header, verify_kid=True):
    """The signing JWK for a token header, None if there is none.

    As mozilla-django-oidc: same ``kid`` (unless OIDC_VERIFY_KID is off) and same ``alg`` when the key
    names one. A header without ``kid`` is matched with the only signing key of the set, if there is
    exactly one (OpenID Connect Core 10.1: a ``kid`` is required only when the set has several).
    """
    kid, alg = header.get("kid"), header.get("alg")
    candidates = [key for key in keys
                  if key.get("use") in (None, "sig") and ("alg" not in key or key["alg"] == alg)]
    if verify_kid:
        if kid is None:
            return candidates[0] if len(candidates) == 1 else None
        candidates = [key for key in candidates if key.get("kid") == kid]
    return candidates[0] if candidates else None


def _build_backend():
    from django.core.exceptions import PermissionDenied, SuspiciousOperation
    from django.utils.module_loading import import_string
    from mozilla_django_oidc import auth as mozilla_auth

    base = import_string(getattr(settings, "LAZY_OIDC_BASE_BACKEND", None) or MOZILLA_BACKEND)
    pyjwt = getattr(mozilla_auth, "jwt", None)  # mozilla-django-oidc >= 5 verifies with PyJWT keys

    class OIDCAuthenticationBackend(base):
        """Drive's backend with cached JWKS and 503-able provider failures (see lazy_oidc)."""

        def retrieve_matching_jwk(self, token):
            header = jose_header(token)
            verify_kid = self.get_settings("OIDC_VERIFY_KID", True)
            cache = provider().jwks(self.OIDC_OP_JWKS_ENDPOINT)  # fetch errors: DiscoveryError
            key = select_jwk(cache.get()["keys"], header, verify_kid)
            if key is None:  # unknown kid: the provider may have rotated its keys
                key = select_jwk(cache.get(refresh=True, min_age=cache.config.cooldown)["keys"],
                                 header, verify_kid)
            if key is None:
                raise SuspiciousOperation("Could not find a valid JWKS.")
            if pyjwt is not None:
                try:
                    return pyjwt.PyJWK(key)
                except pyjwt.exceptions.PyJWTError:
                    raise SuspiciousOperation("Could not load the provider's JWK.") from None
            return key

        def get_token(self, payload):
            with _ProviderCall("token endpoint"):
                return super().get_token(payload)

        def get_userinfo(self, access_token, id_token, payload):
            with _ProviderCall("userinfo endpoint"):
                return super().get_userinfo(access_token, id_token, payload)

        def authenticate(self, request, **kwargs):
            user = super().authenticate(request, **kwargs)
            if user is None and request is not None and request.GET.get("code") and request.GET.get("state"):
                # This backend used the authorization code. Stop Django from handing the spent code to
                # the next backend (Drive's own class, listed after ours for the sessions' sake).
                raise PermissionDenied("OIDC authentication failed")
            return user

    OIDCAuthenticationBackend.__module__ = MODULE
    OIDCAuthenticationBackend.__qualname__ = "OIDCAuthenticationBackend"
    return OIDCAuthenticationBackend


def _build_callback_view():
    from django.utils.module_loading import import_string

    base = import_string(getattr(settings, "LAZY_OIDC_BASE_CALLBACK_CLASS", None) or MOZILLA_CALLBACK)

    class OIDCAuthenticationCallbackView(base):
        """Drive's callback view; the session names Drive's backend path, not ours, so sessions stay
        valid when the add-on is switched on or off."""

        def login_success(self):
            session_backend = getattr(settings, "LAZY_OIDC_SESSION_BACKEND", None)
            if (getattr(self.user, "backend", None) == BACKEND_PATH and session_backend
                    and session_backend in settings.AUTHENTICATION_BACKENDS):
                self.user.backend = session_backend
            return super().login_success()

    OIDCAuthenticationCallbackView.__module__ = MODULE
    OIDCAuthenticationCallbackView.__qualname__ = "OIDCAuthenticationCallbackView"
    return OIDCAuthenticationCallbackView


def _build_drf_authentication():
    from django.utils.module_loading import import_string
    from rest_framework import exceptions

    base = import_string(getattr(settings, "LAZY_OIDC_BASE_DRF_AUTHENTICATION", None) or MOZILLA_DRF_AUTH)

    class ProviderUnavailableAPIError(exceptions.APIException):
        status_code = 503
        default_detail = UNAVAILABLE_MESSAGE
        default_code = "oidc_provider_unavailable"

    class OIDCAuthentication(base):
        """mozilla's DRF authentication; an unusable provider gives 503 + Retry-After, not 500."""

        def authenticate(self, request):
            try:
                return super().authenticate(request)
            except DiscoveryError as exc:
                error = ProviderUnavailableAPIError()
                error.wait = max(1, math.ceil(exc.retry_after or _cooldown()))
                raise error from None

    OIDCAuthentication.__module__ = MODULE
    OIDCAuthentication.__qualname__ = "OIDCAuthentication"
    return OIDCAuthentication


_FACTORIES = {
    "OIDCAuthenticationBackend": _build_backend,
    "OIDCAuthenticationCallbackView": _build_callback_view,
    "OIDCAuthentication": _build_drf_authentication,
}
_built = {}
_built_lock = threading.Lock()


def __getattr__(name):
    factory = _FACTORIES.get(name)
    if factory is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    with _built_lock:
        if name not in _built:
            _built[name] = factory()
        return _built[name]
