"""OIDC callback view (as Drive's: django-lasuite's view, redirecting when the app refuses the user)."""

from django.http import HttpResponseRedirect
from lasuite.oidc_login.views import OIDCAuthenticationCallbackView as LaSuiteOIDCAuthenticationCallbackView

from core.authentication.exceptions import UserCannotAccessApp


class OIDCAuthenticationCallbackView(LaSuiteOIDCAuthenticationCallbackView):
    """Callback after the identity provider's login."""

    def get(self, request):
        """Run the code flow; map UserCannotAccessApp to a redirect to the failure URL."""
        try:
            return super().get(request)
        except UserCannotAccessApp:
            return HttpResponseRedirect(self.failure_url + "?auth_error=user_cannot_access_app")
