"""Core app configuration."""

from django.apps import AppConfig


class CoreConfig(AppConfig):
    """Configuration of the core app (Drive's ``core``)."""

    name = "core"
    app_label = "core"
    verbose_name = "mini drive core application"
    default_auto_field = "django.db.models.AutoField"
