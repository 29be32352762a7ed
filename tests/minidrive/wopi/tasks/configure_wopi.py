"""WOPI configuration from the clients' discovery (stand-in for Drive's ``wopi/tasks/configure_wopi.py``).

Same semantics as Drive v0.21.1, written anew:

* ``configure_wopi_clients`` (a celery task, no retry) first **deletes** the cache key
  ``wopi_configuration``, then configures every client of ``settings.WOPI_CLIENTS`` in order; the first
  failure propagates, leaving the cache with only the clients done before it (or nothing).
* per client: ``requests.get(discovery_url, timeout=30)``; ``RuntimeError`` on a non-2xx status or when
  the XML has no ``net-zone``; the optional ``proof-key`` gives PEM public keys (current and old);
  every ``app/action[@name="edit"]`` is kept: by ``ext`` or, when ``ext=""``, by the app name as
  mimetype; excluded extensions/mimetypes are skipped; the result is cached for
  ``WOPI_CONFIGURATION_CACHE_EXPIRATION`` seconds.
* cached value::

      {"mimetypes": {<mimetype>: {"launch_url": <urlsrc>, "client": <client>}},
       "extensions": {<ext>: {"launch_url": <urlsrc>, "client": <client>}},
       <client>: {"proof_keys": {} | {"public_key": <PEM bytes>, "old_public_key": <PEM bytes>}}}

* Drive reads the cache with ``cache.get(key, default=WOPI_DEFAULT_CONFIGURATION)`` and then mutates
  what it got: when the key is absent that is the module-level default dict itself, so within one
  process a run after a previous one starts from the previous run's entries. Kept as is, on purpose.
* the beat hook: on ``on_after_finalize`` the task is added with a crontab made of the
  ``WOPI_CONFIGURATION_CRONTAB_*`` settings, under the schedule name ``configure_wopi_clients``.

Left out: nothing of the task itself.
"""

from base64 import b64decode

import requests
from celery import Celery
from celery.schedules import crontab
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicNumbers
from defusedxml.ElementTree import fromstring
from django.conf import settings
from django.core.cache import cache

from drive.celery_app import app as celery_app

WOPI_CONFIGURATION_CACHE_KEY = "wopi_configuration"
WOPI_DEFAULT_CONFIGURATION = {
    "mimetypes": {},
    "extensions": {},
}


@celery_app.on_after_finalize.connect
def setup_periodic_tasks(sender: Celery, **kwargs):
    """Register the nightly WOPI configuration in the beat schedule."""
    sender.add_periodic_task(
        crontab(
            minute=settings.WOPI_CONFIGURATION_CRONTAB_MINUTE,
            hour=settings.WOPI_CONFIGURATION_CRONTAB_HOUR,
            day_of_month=settings.WOPI_CONFIGURATION_CRONTAB_DAY_OF_MONTH,
            month_of_year=settings.WOPI_CONFIGURATION_CRONTAB_MONTH_OF_YEAR,
        ),
        configure_wopi_clients.s(),
        name="configure_wopi_clients",
        serializer="json",
    )


@celery_app.task
def configure_wopi_clients():
    """Rebuild the cached WOPI configuration from every client's discovery URL."""
    cache.delete(WOPI_CONFIGURATION_CACHE_KEY)
    for client in settings.WOPI_CLIENTS:
        _configure_wopi_client_from_discovery(
            client, settings.WOPI_CLIENTS_CONFIGURATION[client]["discovery_url"]
        )


def _b64_to_int(text):
    """Big-endian integer from a base64 string."""
    return int.from_bytes(b64decode(text), "big")


def build_rsa_public_key(modulus, exponent):
    """PEM (SubjectPublicKeyInfo) of the RSA public key given as base64 modulus and exponent."""
    public_key = RSAPublicNumbers(_b64_to_int(exponent), _b64_to_int(modulus)).public_key()
    return public_key.public_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PublicFormat.SubjectPublicKeyInfo,
    )


def _configure_wopi_client_from_discovery(client, discovery_url):
    """Fetch one client's discovery and merge its edit actions into the cached configuration."""
    response = requests.get(discovery_url, timeout=30)
    if not response.ok:
        raise RuntimeError(
            f"status code {response.status_code} return by discovery url for wopi client {client} is invalid"
        )

    configuration = cache.get(WOPI_CONFIGURATION_CACHE_KEY, default=WOPI_DEFAULT_CONFIGURATION)

    root = fromstring(response.content)
    net_zone = root.find(".//net-zone")
    if net_zone is None:
        raise RuntimeError(f"net-zone element not found in discovery url for wopi client {client}")

    proof_keys = {}
    proof_key = root.find(".//proof-key")
    if proof_key is not None:
        proof_keys = {
            "public_key": build_rsa_public_key(proof_key.get("modulus"), proof_key.get("exponent")),
            "old_public_key": build_rsa_public_key(proof_key.get("oldmodulus"), proof_key.get("oldexponent")),
        }
    configuration[client] = {"proof_keys": proof_keys}

    for app in net_zone.findall(".//app"):
        app_name = app.get("name")
        if app_name is None:
            continue
        for action in app.findall("action"):
            if action.get("name") != "edit":
                continue
            entry = {"launch_url": action.get("urlsrc"), "client": client}
            ext = action.get("ext")
            if ext == "":
                if app_name in settings.WOPI_EXCLUDED_MIMETYPES:
                    continue
                configuration["mimetypes"][app_name] = entry
            else:
                if ext in settings.WOPI_EXCLUDED_EXTENSIONS:
                    continue
                configuration["extensions"][ext] = entry

    cache.set(
        WOPI_CONFIGURATION_CACHE_KEY, configuration, timeout=settings.WOPI_CONFIGURATION_CACHE_EXPIRATION
    )
