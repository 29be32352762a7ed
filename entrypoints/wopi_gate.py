#!/usr/bin/env python3
"""WOPI gate and WOPI refresher for La Suite Drive's backend container.

Where it runs
    Mounted at /opt/robust/wopi_gate.py in the Drive backend container (Drive v0.21.1 image:
    python 3.13 alpine, venv /app/.venv first on PATH, WORKDIR /app), next to probe.py. It has two
    roles, both in this one file:

    1. Gate (command line), chained by drive_entrypoint.py after the privilege drop:
           python3 /opt/robust/wopi_gate.py -- gunicorn -c /usr/local/etc/gunicorn/drive.py \\
               wopi_gate:application
       For every client in WOPI_CLIENTS it waits until WOPI_<CLIENT>_DISCOVERY_URL serves usable
       WOPI discovery (probe.py's check, each attempt under a hard deadline), retrying with
       exponential backoff and full jitter (interval capped at 1 s; attempts overlap because a
       booting coolwsd holds connections it never answers, so the backend starts within about 2 s of
       discovery's first 200), then runs Drive's configure function
       (wopi.tasks.configure_wopi.configure_wopi_clients) synchronously in this process, retried
       within the same bound. Then, or when the bound WOPI_WAIT_TIMEOUT is reached (one loud line),
       it replaces itself with the command (os.execvp): gunicorn becomes the process Docker
       signals. The gate never blocks the backend for longer than the bound and never exits non-zero
       because of Collabora, Redis or Drive's settings.

    2. Refresher (WSGI wrapper), when gunicorn loads ``wopi_gate:application`` instead of
       ``drive.wsgi:application``: each gunicorn worker loads Drive's WSGI application unchanged and
       starts one daemon thread. Across all workers and replicas at most one refresh runs per period
       (a lock in Drive's shared cache, ``cache.add`` with a TTL). A refresh probes every client's
       discovery and calls Drive's configure function only when the cached configuration is missing
       or discovery's content changed (a restarted or upgraded Collabora has a new urlsrc hash).
       Drive's function deletes the cached configuration before fetching; the refresher snapshots
       the cached value and puts it back if the call fails ("serve stale on failure"), and when the
       configuration is missing while discovery is down (Drive's nightly task met an outage) it
       restores the last good configuration. Period: WOPI_REFRESH_INTERVAL while all is well, 10 s
       while the configuration is missing or discovery is failing.

What it needs
    Python >= 3.9 standard library; probe.py in the same directory (else ../healthchecks/probe.py);
    Drive's code importable from the working directory (/app) and its settings loadable (Django,
    django-configurations, Drive's cache, which is Redis in production and shared by all processes).
    ``backoff`` (present in Drive's image only through posthog) drives the gate's retries when it is
    importable; without it an equivalent built-in loop (exponential, full jitter, same cap and
    bound) is used and nothing else changes.

Environment
    WOPI_CLIENTS                 Drive's list of WOPI clients, comma-separated (Drive's ListValue:
                                 items stripped, empty items dropped). Empty or unset: nothing to
                                 wait for, the gate execs at once and the refresher stays off.
    WOPI_<CLIENT>_DISCOVERY_URL  Drive's discovery URL of each client (<CLIENT> upper-cased). The
                                 gate and the refresher use the value Drive's settings hold.
    WOPI_WAIT_TIMEOUT            gate's total bound in seconds (default 300; 0 = do not wait). A
                                 value that is not a non-negative number: one warning, default used.
    WOPI_REFRESH_INTERVAL        refresher period in seconds while healthy (default 60, minimum 10;
                                 0 = refresher off). Invalid: one warning, default used.
    WOPI_WSGI_APPLICATION        the WSGI application the refresher wraps (default
                                 ``drive.wsgi:application``).
    DJANGO_SETTINGS_MODULE       default ``drive.settings`` (as Drive's manage.py and wsgi.py);
    DJANGO_CONFIGURATION         default ``Development`` (idem; the recipe sets Production).

Cache keys (Drive's default cache, next to Drive's ``wopi_configuration``)
    robust_wopi_discovery_digest  sha256 of the discovery bodies the configuration was built from
                                  (expires a little before Drive's configuration, so it is renewed
                                  before it lapses); robust_wopi_last_good (last good configuration
                                  and the clients/URLs it belongs to; restored only if they match);
                                  robust_wopi_refresh_state (shared state, so that N workers log a
                                  change once); robust_wopi_refresh_tick[_fast], robust_wopi_configure_lock
                                  (single flight: ``cache.add`` is atomic on Redis, SET NX).

Limits
    Drive's function still deletes before it fetches, so readers may see no configuration for
    the milliseconds of a successful fetch (the refresher calls it only on change, never per
    period). With several clients, a client whose discovery stays down keeps the refresher from
    reconfiguring the others (Drive's function stops at the first failure); the last good
    configuration is served meanwhile. If Drive's WSGI application itself fails to import,
    gunicorn reports that exactly as without this wrapper.

Logs (stderr, one line per state change, never one per retry; no secrets, URLs without userinfo)
    gate:      waiting / discovery state changed / ready after N s / configured after N s /
               GAVE UP after N s; refresher: discovery down / restored last good / reconfigured
               (why) / back to normal / configure failed.

Exit codes (gate; on success the process becomes the command and its exit code is the command's)
    64   usage error: no command after ``--``
    126  the command exists but cannot be executed; 127 the command was not found
    130  interrupted (SIGINT) while waiting; 0 for --help
"""

import hashlib
import os
import random
import sys
import threading
import time

PREFIX_GATE = "wopi-gate"
PREFIX_REFRESH = "wopi-refresh"

DEFAULT_WAIT_TIMEOUT = 300.0
DEFAULT_REFRESH_INTERVAL = 60.0
MIN_REFRESH_INTERVAL = 10.0
DEGRADED_INTERVAL = 10.0  # refresher period while the configuration is missing or discovery fails
BACKOFF_CAP = 1.0  # gate: longest sleep between two attempts
ATTEMPT_TIMEOUT = 5.0  # hard deadline of one discovery probe
ATTEMPT_WAIT = 1.0  # gate: how long one attempt waits for a probe result before backing off
MAX_IN_FLIGHT = 4  # gate: overlapping probes per client (a silent server holds connections)
DRIVE_FETCH_TIMEOUT = 30.0  # Drive's own requests.get(discovery_url, timeout=30), per client

# Drive's cache key (wopi.tasks.configure_wopi.WOPI_CONFIGURATION_CACHE_KEY) and ours, in Drive's cache.
WOPI_CONFIGURATION_CACHE_KEY = "wopi_configuration"
DIGEST_KEY = "robust_wopi_discovery_digest"
LAST_GOOD_KEY = "robust_wopi_last_good"
STATE_KEY = "robust_wopi_refresh_state"
TICK_KEY = "robust_wopi_refresh_tick"
TICK_FAST_KEY = "robust_wopi_refresh_tick_fast"
LOCK_KEY = "robust_wopi_configure_lock"

USAGE = "usage: wopi_gate.py -- COMMAND [ARGS...]"


# --------------------------------------------------------------------------- small helpers


def log(prefix, message):
    """One line on stderr, flushed (container logs)."""
    line = " ".join(f"{prefix}: {message}".split())
    try:
        sys.stderr.write(line[:2000] + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _short(exc, limit=200):
    """``Type: first line of message`` of an exception, bounded. Never raises."""
    try:
        text = str(exc).strip().splitlines()
    except Exception:  # noqa: BLE001 - a broken __str__ must not take the caller down
        text = []
    text = text[0] if text else ""
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def redact_url(url):
    """URL without userinfo (``user:pass@``), for logs."""
    url = str(url)
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    cut = len(rest)
    for c in "/?#":
        i = rest.find(c)
        if 0 <= i < cut:
            cut = i
    authority = rest[:cut]
    if "@" in authority:
        authority = "***@" + authority.rsplit("@", 1)[1]
    return f"{scheme}://{authority}{rest[cut:]}"


def env_seconds(name, default, prefix, minimum=0.0):
    """A non-negative number of seconds from the environment; invalid: one warning, default."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = None
    if value is None or not (0 <= value < 1e7):  # also rejects nan and inf
        log(prefix, f"warning: {name}={raw[:40]!r} is not a number of seconds; using {default:g}")
        return default
    if 0 < value < minimum:
        log(prefix, f"warning: {name}={raw[:40]!r} is below the minimum of {minimum:g} s; using {minimum:g}")
        return minimum
    return value


def parse_clients(raw):
    """Drive's ListValue parsing of WOPI_CLIENTS: comma-separated, stripped, empty items dropped."""
    return [item.strip() for item in (raw or "").strip().split(",") if item.strip()]


def category(reason):
    """Coarse class of a failure reason (digits removed), so retries do not count as changes."""
    out = []
    for ch in reason:
        if ch.isdigit() or ch == ".":
            if not out or out[-1] != "#":
                out.append("#")
        else:
            out.append(ch)
    return "".join(out)


def import_probe():
    """probe.py from this file's directory first, then ../healthchecks; None if absent."""
    here = os.path.dirname(os.path.abspath(__file__))
    for folder in (here, os.path.normpath(os.path.join(here, "..", "healthchecks"))):
        if os.path.isfile(os.path.join(folder, "probe.py")):
            if folder in sys.path:
                sys.path.remove(folder)
            sys.path.insert(0, folder)
            break
    try:
        import probe
    except ImportError:
        return None
    return probe


def check_discovery(probe, url, deadline):
    """One bounded discovery probe with probe.py's client: (ok, reason, sha256 of the body)."""
    try:
        response = probe.fetch(url, ATTEMPT_TIMEOUT, deadline=max(deadline, time.monotonic() + 0.05))
    except probe.ProbeError as exc:
        return False, str(exc), None
    except Exception as exc:  # noqa: BLE001 - the probe must never take the caller down
        return False, f"probe error: {_short(exc)}", None
    if response.status != 200:
        return False, f"HTTP {response.status} {response.reason}".strip(), None
    ok, reason = probe.check_discovery_body(response.body or b"")
    if not ok:
        return False, reason, None
    return True, reason, hashlib.sha256(response.body).hexdigest()


def retry_until(attempt, deadline, cap=BACKOFF_CAP):
    """Call ``attempt()`` until it returns something truthy or ``deadline`` passes.

    Exponential backoff with full jitter, sleeps capped at ``cap`` and never past the deadline.
    Uses the ``backoff`` package when importable, else the same policy built in. Returns the last
    value of ``attempt()``.
    """
    left = deadline - time.monotonic()
    if left <= 0:
        return attempt()
    try:
        import backoff
    except ImportError:
        backoff = None
    if backoff is not None:
        try:
            decorated = backoff.on_predicate(
                backoff.expo,
                predicate=lambda value: not value,
                max_time=left,
                max_value=cap,
                jitter=backoff.full_jitter,
                logger=None,
            )(attempt)
        except TypeError:  # an unexpected backoff API: use the built-in loop
            decorated = None
        if decorated is not None:
            return decorated()
    tries = 0
    while True:
        value = attempt()
        if value:
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            return value
        time.sleep(min(left, random.uniform(0, min(cap, 2.0**tries))))  # noqa: S311 - jitter
        tries += 1


def _quietly(func):
    try:
        func()
    except Exception:  # noqa: BLE001, S110 - best effort only
        pass


def call_with_deadline(func, deadline):
    """Run ``func()`` in a daemon thread; return its value, re-raise its exception, or raise
    TimeoutError when it has not finished by ``deadline`` (the thread is abandoned)."""
    box = {}

    def run():
        try:
            box["value"] = func()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            box["error"] = exc

    worker = threading.Thread(target=run, name="wopi-configure", daemon=True)
    worker.start()
    worker.join(max(0.0, deadline - time.monotonic()))
    if worker.is_alive():
        raise TimeoutError("Drive's configure function did not return before the deadline")
    if "error" in box:
        raise box["error"]
    return box.get("value")


# --------------------------------------------------------------------------- Drive (Django) side


def setup_django():
    """Load Drive's settings the way Drive's manage.py / wsgi.py do (django-configurations)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "drive.settings")
    os.environ.setdefault("DJANGO_CONFIGURATION", "Development")
    cwd = os.getcwd()  # WORKDIR /app holds Drive's code (gunicorn's python_path; manage.py's dir)
    if cwd not in sys.path:
        sys.path.insert(1, cwd)
    try:
        import configurations
    except ImportError:
        configurations = None
    if configurations is not None:
        configurations.setup()
    else:
        import django

        django.setup()


class DriveWopi:
    """Drive's WOPI configuration, read and written only through Drive's cache and function."""

    def __init__(self):
        from django.conf import settings
        from django.core.cache import cache
        from wopi.tasks import configure_wopi

        self.cache = cache
        self.module = configure_wopi
        self.key = getattr(configure_wopi, "WOPI_CONFIGURATION_CACHE_KEY", WOPI_CONFIGURATION_CACHE_KEY)
        self.clients = list(getattr(settings, "WOPI_CLIENTS", []) or [])
        conf = getattr(settings, "WOPI_CLIENTS_CONFIGURATION", {}) or {}
        self.urls = {c: (conf.get(c) or {}).get("discovery_url") for c in self.clients}
        self.expiration = int(getattr(settings, "WOPI_CONFIGURATION_CACHE_EXPIRATION", 86400) or 86400)
        # The digest expires a little before Drive's configuration does, so that the refresher
        # renews the configuration before it disappears.
        self.digest_ttl = max(60, self.expiration - max(600, self.expiration // 10))

    def identity(self):
        """What a stored 'last good' configuration must match to be restorable."""
        return sorted((c, str(self.urls.get(c))) for c in self.clients)

    def present(self):
        return bool(self.cache.has_key(self.key))

    def configure(self, digest):
        """Call Drive's configure function; on failure put the previous configuration back.

        The restore uses ``cache.add`` so that it never overwrites a configuration another
        process wrote meanwhile. Raises what Drive's function raised.
        """
        snapshot = self.cache.get(self.key)
        try:
            # The task object called directly runs synchronously in this process (no broker).
            self.module.configure_wopi_clients()
        except BaseException:
            if snapshot is not None:
                self.cache.add(self.key, snapshot, timeout=self.expiration)
            raise
        config = self.cache.get(self.key)
        if config is None:
            raise RuntimeError("Drive's configure function returned but the cache holds no configuration")
        if digest is not None:
            self.cache.set(DIGEST_KEY, digest, timeout=self.digest_ttl)
        self.cache.set(LAST_GOOD_KEY, {"identity": self.identity(), "config": config}, timeout=None)
        self.cache.set(STATE_KEY, "ok", timeout=None)
        return config

    def restore_last_good(self):
        """Put the last good configuration back if none is cached; True if it did."""
        saved = self.cache.get(LAST_GOOD_KEY)
        if not isinstance(saved, dict) or saved.get("identity") != self.identity():
            return False
        return bool(self.cache.add(self.key, saved.get("config"), timeout=self.expiration))


def describe(config):
    """Short summary of a Drive WOPI configuration (no URLs, no keys)."""
    if not isinstance(config, dict):
        return "no configuration"
    extensions = len(config.get("extensions") or {})
    return f"{extensions} extensions, {len(config.get('mimetypes') or {})} mimetypes"


def combined_digest(digests):
    return hashlib.sha256("\n".join(f"{c}={d}" for c, d in sorted(digests.items())).encode()).hexdigest()


# --------------------------------------------------------------------------- role 1: the gate


class Gate:
    """Discovery probes of the gate: overlapping attempts, results handled in the main thread.

    A booting coolwsd accepts connections it never answers, so an attempt that started just
    before discovery came up can hang for its whole deadline. Attempts therefore overlap: each
    call launches one more probe per pending client (at most MAX_IN_FLIGHT each, every one under
    its own hard deadline) and waits at most ATTEMPT_WAIT for any result. A fresh connection after
    readiness is answered at once, so readiness is seen within ATTEMPT_WAIT + BACKOFF_CAP, while a
    slow but working discovery still has ATTEMPT_TIMEOUT to answer.
    """

    def __init__(self, probe, clients, urls, deadline, started):
        self.probe = probe
        self.clients = clients
        self.urls = urls
        self.deadline = deadline
        self.started = started
        self.last = {}  # client -> (ok, reason)
        self.logged_category = {}
        self.ready_at = {}
        self.digests = {}
        self.in_flight = dict.fromkeys(clients, 0)
        self.results = []
        self.lock = threading.Lock()
        self.wake = threading.Event()

    def elapsed(self):
        return time.monotonic() - self.started

    def _probe(self, client):
        result = check_discovery(self.probe, self.urls[client], self.deadline)
        with self.lock:
            self.results.append((client, *result))
        self.wake.set()

    def attempt_discovery(self):
        for client in self.clients:
            if client not in self.ready_at and self.in_flight[client] < MAX_IN_FLIGHT:
                self.in_flight[client] += 1
                threading.Thread(target=self._probe, args=(client,), name="wopi-probe", daemon=True).start()
        self.wake.wait(max(0.0, min(ATTEMPT_WAIT, self.deadline - time.monotonic())))
        with self.lock:
            results, self.results = self.results, []
            self.wake.clear()
        for client, ok, reason, digest in results:
            self.in_flight[client] -= 1
            if client in self.ready_at:
                continue
            self.last[client] = (ok, reason)
            if ok:
                self.ready_at[client] = self.elapsed()
                self.digests[client] = digest
                log(PREFIX_GATE, f"{client!r} WOPI discovery ready after {self.elapsed():.1f} s")
                continue
            cat = category(reason)
            if client not in self.logged_category:
                log(
                    PREFIX_GATE,
                    f"waiting up to {self.deadline - self.started:g} s for {client!r} WOPI discovery at "
                    f"{redact_url(self.urls[client])}: {reason}",
                )
            elif self.logged_category[client] != cat:
                log(PREFIX_GATE, f"{client!r} WOPI discovery still not ready: {reason}")
            self.logged_category[client] = cat
        return all(c in self.ready_at for c in self.clients)

    def pending_reasons(self):
        pending = [c for c in self.clients if c not in self.ready_at]
        return "; ".join(f"{c}: {self.last.get(c, (False, 'no probe finished'))[1]}" for c in pending)


def gate(argv_command):
    """Wait for WOPI and configure it; never raises. The caller execs the command afterwards."""
    started = time.monotonic()
    if not parse_clients(os.environ.get("WOPI_CLIENTS")):
        log(PREFIX_GATE, "no WOPI clients configured (WOPI_CLIENTS is empty): not waiting")
        return
    timeout = env_seconds("WOPI_WAIT_TIMEOUT", DEFAULT_WAIT_TIMEOUT, PREFIX_GATE)
    if timeout == 0:
        log(PREFIX_GATE, "WOPI_WAIT_TIMEOUT=0: not waiting for WOPI discovery")
        return
    deadline = started + timeout
    what = os.path.basename(argv_command[0])
    probe = import_probe()
    if probe is None:
        log(PREFIX_GATE, f"GAVE UP: probe.py not found next to wopi_gate.py; starting {what} without waiting")
        return
    try:
        setup_django()
        drive = DriveWopi()
    except Exception as exc:  # noqa: BLE001 - Drive's own start will report its settings problem
        log(PREFIX_GATE, f"GAVE UP: cannot load Drive's settings ({_short(exc)}); starting {what} now")
        return
    missing = [c for c in drive.clients if not drive.urls.get(c)]
    if not drive.clients or missing:
        log(PREFIX_GATE, f"no discovery URL for WOPI client(s) {missing}; starting {what} without waiting")
        return
    # Warm up (cache backend import, first connection) while Collabora boots, not after; in the
    # background: a cache problem shows up, bounded and retried, when configuring.
    threading.Thread(target=_quietly, args=(drive.present,), name="wopi-warm-up", daemon=True).start()

    state = Gate(probe, drive.clients, drive.urls, deadline, started)
    if not retry_until(state.attempt_discovery, deadline):
        log(
            PREFIX_GATE,
            f"GAVE UP waiting for WOPI discovery after {state.elapsed():.0f} s "
            f"(WOPI_WAIT_TIMEOUT={timeout:g}) - {state.pending_reasons()} - starting {what} anyway; "
            "WOPI stays off until discovery answers and the refresher configures it",
        )
        return

    errors = []

    def attempt_configure():
        try:
            config = call_with_deadline(lambda: drive.configure(combined_digest(state.digests)), deadline)
        except Exception as exc:  # noqa: BLE001 - retried, reported once per change
            reason = _short(exc)
            if not errors or category(errors[-1]) != category(reason):
                log(PREFIX_GATE, f"configuring WOPI failed, retrying: {reason}")
            errors.append(reason)
            return None
        return config or True

    config = retry_until(attempt_configure, deadline)
    if config:
        log(PREFIX_GATE, f"WOPI configured after {state.elapsed():.1f} s ({describe(config)})")
    else:
        log(
            PREFIX_GATE,
            f"GAVE UP configuring WOPI after {state.elapsed():.0f} s (WOPI_WAIT_TIMEOUT={timeout:g}): "
            f"{errors[-1] if errors else 'no attempt finished'} - starting {what} anyway",
        )


def exec_command(command):
    """Replace this process with ``command`` (PATH lookup). Returns an exit code only on failure."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    try:
        os.execvp(command[0], command)  # noqa: S606 - argv list, no shell
    except FileNotFoundError:
        log(PREFIX_GATE, f"cannot start {command[0]!r}: command not found")
        return 127
    except OSError as exc:
        log(PREFIX_GATE, f"cannot start {command[0]!r}: {exc.strerror or exc}")
        return 126
    return 126  # not reached: execvp does not return


def main(argv=None):
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        sys.stdout.write(__doc__)
        return 0
    if args and args[0] == "--":
        args = args[1:]
    if not args or not args[0]:
        log(PREFIX_GATE, f"{USAGE} (no command given)")
        return 64
    try:
        gate(args)
    except KeyboardInterrupt:
        log(PREFIX_GATE, "interrupted while waiting for WOPI")
        return 130
    except BaseException as exc:  # noqa: BLE001 - the gate must never keep the backend from starting
        log(PREFIX_GATE, f"internal error ({_short(exc)}); starting {args[0]} anyway")
    return exec_command(args)


# --------------------------------------------------------------------------- role 2: the refresher


class Refresher:
    """One daemon thread per process; single-flight across processes through Drive's cache."""

    def __init__(self, interval, probe):
        self.interval = interval
        self.probe = probe
        self.poll = min(5.0, DEGRADED_INTERVAL / 2)
        self.token = f"{os.getpid()}-{random.getrandbits(48):x}"
        self.drive = None
        self.local_error = None

    def run(self):
        while True:
            try:
                time.sleep(self.poll * random.uniform(0.8, 1.2))  # noqa: S311 - jitter
                self.tick()
                self.local_error = None
            except BaseException as exc:  # noqa: BLE001 - e.g. Redis down, or a bug: the thread must live on
                reason = _short(exc)
                if self.local_error is None or category(self.local_error) != category(reason):
                    log(PREFIX_REFRESH, f"refresh failed ({reason}); retrying every {self.poll:g} s")
                self.local_error = reason

    def note(self, state, message):
        """Log ``message`` when the shared state changes (one line per change across workers)."""
        cache = self.drive.cache
        if cache.get(STATE_KEY) != state:
            cache.set(STATE_KEY, state, timeout=None)
            log(PREFIX_REFRESH, message)

    def tick(self):
        if self.drive is None:
            self.drive = DriveWopi()
        drive = self.drive
        if not drive.clients:
            return
        present = drive.present()
        healthy = present and drive.cache.get(STATE_KEY) == "ok"
        key, ttl = (TICK_KEY, self.interval) if healthy else (TICK_FAST_KEY, DEGRADED_INTERVAL)
        if not drive.cache.add(key, self.token, timeout=max(1, int(ttl))):
            return  # another worker or replica refreshes in this period
        self.refresh(present)

    def refresh(self, present):
        drive = self.drive
        deadline = time.monotonic() + ATTEMPT_TIMEOUT
        digests, failures = {}, []
        for client in drive.clients:
            url = drive.urls.get(client)
            if not url:
                failures.append(f"{client}: no discovery URL")
                continue
            ok, reason, digest = check_discovery(self.probe, url, deadline)
            if ok:
                digests[client] = digest
            else:
                failures.append(f"{client}: {reason}")
        if failures:
            restored = False if present else drive.restore_last_good()
            if restored:
                log(
                    PREFIX_REFRESH,
                    "WOPI configuration was missing while discovery is down; restored the last good "
                    f"configuration ({'; '.join(failures)})",
                )
            serving = "serving the last good configuration" if present or restored else "no configuration"
            self.note(
                "down:" + category("; ".join(failures)),
                f"WOPI discovery not ready ({'; '.join(failures)}); {serving}",
            )
            return
        digest = combined_digest(digests)
        if present and drive.cache.get(DIGEST_KEY) == digest:
            self.note("ok", "WOPI discovery answers and the configuration is current")
            return
        why = "discovery content changed" if present else "configuration was missing"
        lock_ttl = int(DRIVE_FETCH_TIMEOUT * max(1, len(drive.clients)) + 30)
        if not drive.cache.add(LOCK_KEY, self.token, timeout=lock_ttl):
            return  # another process is configuring right now
        try:
            config = drive.configure(digest)
        except Exception as exc:  # noqa: BLE001 - stale configuration kept, retried next period
            self.note(
                "configure-failed:" + category(_short(exc)),
                f"reconfiguring WOPI failed ({_short(exc)}); "
                + ("kept the previous configuration" if drive.present() else "no configuration to serve"),
            )
            return
        finally:
            if drive.cache.get(LOCK_KEY) == self.token:
                drive.cache.delete(LOCK_KEY)
        log(PREFIX_REFRESH, f"WOPI reconfigured ({why}): {describe(config)}")


_REFRESHER_LOCK = threading.Lock()
_REFRESHER_PID = [None]


def start_refresher():
    """Start the refresher thread in this process once (again after a fork). Never raises."""
    pid = os.getpid()
    if _REFRESHER_PID[0] == pid:
        return
    with _REFRESHER_LOCK:
        if _REFRESHER_PID[0] == pid:
            return
        _REFRESHER_PID[0] = pid
        try:
            if not parse_clients(os.environ.get("WOPI_CLIENTS")):
                return
            interval = env_seconds(
                "WOPI_REFRESH_INTERVAL", DEFAULT_REFRESH_INTERVAL, PREFIX_REFRESH, MIN_REFRESH_INTERVAL
            )
            if interval == 0:
                return
            probe = import_probe()
            if probe is None:
                log(PREFIX_REFRESH, "probe.py not found next to wopi_gate.py; WOPI refresher off")
                return
            refresher = Refresher(interval, probe)
            threading.Thread(target=refresher.run, name="wopi-refresh", daemon=True).start()
        except Exception as exc:  # noqa: BLE001 - serving requests matters more than refreshing
            log(PREFIX_REFRESH, f"WOPI refresher not started: {_short(exc)}")


def _load_application():
    import importlib

    target = os.environ.get("WOPI_WSGI_APPLICATION", "").strip() or "drive.wsgi:application"
    module_name, _, attr = target.partition(":")
    inner = getattr(importlib.import_module(module_name), attr or "application")

    def application(environ, start_response):
        if _REFRESHER_PID[0] != os.getpid():  # forked after loading (gunicorn --preload)
            start_refresher()
        return inner(environ, start_response)

    application.wrapped = inner
    if not _in_gunicorn_master():
        start_refresher()
    # else: gunicorn --preload loads the application in its master, before forking the workers. No
    # thread there: each worker starts its own refresher on its first request (above).
    return application


def _in_gunicorn_master():
    """True while gunicorn's master (arbiter) loads the application (``--preload``), False in a
    worker (which loads it after the fork) and outside gunicorn."""
    frame = sys._getframe(1)
    arbiter = False
    while frame is not None:
        path = frame.f_code.co_filename.replace(os.sep, "/")
        if "/gunicorn/workers/" in path:
            return False
        if path.endswith("/gunicorn/arbiter.py"):
            arbiter = True
        frame = frame.f_back
    return arbiter


def __getattr__(name):
    """``wopi_gate:application`` loads Drive's WSGI application and starts the refresher."""
    if name == "application":
        app = _load_application()
        globals()["application"] = app
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    sys.exit(main())
