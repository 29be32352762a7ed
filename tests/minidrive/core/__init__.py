"""Core app of the mini Drive: the user model, the OIDC backend and a small API."""
