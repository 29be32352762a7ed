"""Authentication exceptions (as Drive's ``core.authentication.exceptions``)."""


class UserCannotAccessApp(Exception):
    """Raised when a user cannot access the app."""
