"""WOPI helpers (as Drive's ``wopi.utils``): read the cached configuration, build the launch URL.

Imitated: which entry applies to an item (extension first, lower-cased, then mimetype; only files,
not suspicious ones, and another user's file only once ready), and how the launch URL is built
(trailing ``?``/``&`` stripped, query replaced by ``WOPISrc``, ``closebutton=false``, ``lang`` and the
``<name=PLACEHOLDER&>`` placeholders Drive fills). Left out: proof-key verification of requests.
"""

import re
from urllib.parse import urlencode, urlparse

from django.conf import settings
from django.core.cache import cache

from core import models
from wopi.tasks.configure_wopi import WOPI_CONFIGURATION_CACHE_KEY, WOPI_DEFAULT_CONFIGURATION

LAUNCH_URL_PLACEHOLDER_REGEX = r"(<(?P<name>[a-z]+)=(?P<placeholder>[a-zA-Z0-9_]+)&?>)"


def get_wopi_configuration():
    """The cached WOPI configuration, or the (shared, mutable) default when absent."""
    return cache.get(WOPI_CONFIGURATION_CACHE_KEY, default=WOPI_DEFAULT_CONFIGURATION)


def get_wopi_client_config(item, user):
    """The ``{"launch_url", "client"}`` entry that applies to this item for this user, or None."""
    if (
        item.type != models.ItemTypeChoices.FILE
        or item.upload_state == models.ItemUploadStateChoices.SUSPICIOUS
        or (item.creator != user and item.upload_state != models.ItemUploadStateChoices.READY)
    ):
        return None
    configuration = get_wopi_configuration()
    if not configuration:
        return None
    extension = item.extension.lower() if item.extension else None
    if extension and extension in configuration["extensions"]:
        return configuration["extensions"][extension]
    if item.mimetype in configuration["mimetypes"]:
        return configuration["mimetypes"][item.mimetype]
    return None


def is_item_wopi_supported(item, user):
    """Whether the item can be opened in a WOPI client."""
    return bool(get_wopi_client_config(item, user))


def compute_wopi_launch_url(launch_url, get_file_info_path, lang=None):
    """The URL the browser opens: the client's urlsrc with WOPISrc and Drive's parameters."""
    launch_url = launch_url.rstrip("?").rstrip("&")
    wopi_src = get_file_info_path
    if settings.WOPI_SRC_BASE_URL:
        wopi_src = f"{settings.WOPI_SRC_BASE_URL}{get_file_info_path}"
    params = {"WOPISrc": wopi_src, "closebutton": "false"}
    if lang:
        params["lang"] = lang
    placeholders = {"UI_LLCC": lang, "DC_LLCC": lang, "DISABLE_CHAT": settings.WOPI_DISABLE_CHAT}
    for match in re.finditer(LAUNCH_URL_PLACEHOLDER_REGEX, launch_url):
        value = placeholders.get(match.group("placeholder"))
        if value is not None:
            params[match.group("name")] = value
    return urlparse(launch_url)._replace(query=urlencode(params)).geturl()
