"""WOPI app configuration."""

from django.apps import AppConfig


class WopiConfig(AppConfig):
    """Configuration class for the wopi app."""

    name = "wopi"
