"""OIDC authentication backend of the mini Drive.

Imitates Drive's ``core.authentication.backends.OIDCAuthenticationBackend``: a subclass of
``lasuite.oidc_login.backends.OIDCAuthenticationBackend`` (itself mozilla-django-oidc's backend), so
``__init__`` reads the ``OIDC_*`` settings exactly as Drive's does (and mozilla raises
ImproperlyConfigured for RS256 without ``OIDC_OP_JWKS_ENDPOINT`` nor ``OIDC_RP_IDP_SIGN_KEY``). The
extra claims (full/short name, stored claims) and the lookup by sub or email follow Drive.

Left out: the entitlements check after login (Drive's static backend lets everyone in).
"""

import logging

from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from lasuite.oidc_login.backends import OIDCAuthenticationBackend as LaSuiteOIDCAuthenticationBackend

from core.models import DuplicateEmailError

logger = logging.getLogger(__name__)


class OIDCAuthenticationBackend(LaSuiteOIDCAuthenticationBackend):
    """Drive's OIDC backend: django-lasuite's, with Drive's user fields."""

    def get_extra_claims(self, user_info):
        """Return the claims stored on the user besides sub and email."""
        claims_to_store = {claim: user_info.get(claim) for claim in settings.OIDC_STORE_CLAIMS}
        return {
            "full_name": self.compute_full_name(user_info),
            "short_name": user_info.get(settings.OIDC_USERINFO_SHORTNAME_FIELD),
            "claims": claims_to_store,
        }

    def get_existing_user(self, sub, email):
        """Fetch an existing user by sub or email."""
        try:
            return self.UserModel.objects.get_user_by_sub_or_email(sub, email)
        except DuplicateEmailError as err:
            raise SuspiciousOperation(err.message) from err
