"""URLconf of the mini Drive.

Imitated from Drive: the API lives under ``api/<API_VERSION>/`` (``api/v1.0/``); django-lasuite's OIDC
login URLs (``authenticate/``, ``callback/``, ``logout/``, ``logout-callback/``,
``backchannel-logout/``, mozilla-django-oidc's underneath) are mounted in that same prefix, as Drive's
``core/urls.py`` does. dockerflow's ``/__lbheartbeat__``, ``/__heartbeat__`` and ``/__version__`` come from
its middleware, not from this file.

Left out: admin, swagger, Drive's many viewsets, the WOPI host endpoints (``api/v1.0/wopi/files/...``).
"""

from django.conf import settings
from django.urls import include, path
from lasuite.oidc_login.urls import urlpatterns as oidc_urls
from rest_framework.routers import DefaultRouter

from core.api import viewsets

router = DefaultRouter()
router.register("items", viewsets.ItemViewSet, basename="items")
router.register("users", viewsets.UserViewSet, basename="users")

urlpatterns = [
    path(f"api/{settings.API_VERSION}/", include([*router.urls, *oidc_urls])),
]
