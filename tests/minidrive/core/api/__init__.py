"""API package of the mini Drive core app.

``exception_handler`` is Drive's: Django ValidationErrors become DRF ones, then drf-standardized-errors
formats the answer (``{"type": "validation_error", "errors": [{"code", "detail", "attr"}]}``). When
drf-standardized-errors is not installed, DRF's own handler answers instead (``{"detail": ...}``).
"""

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions as drf_exceptions
from rest_framework.serializers import as_serializer_error

try:
    from drf_standardized_errors.handler import exception_handler as _drf_exception_handler
except ImportError:  # stand-in without the optional package
    from rest_framework.views import exception_handler as _drf_exception_handler


def exception_handler(exc, context):
    """Handle Django ValidationError like a DRF one, then delegate."""
    if isinstance(exc, DjangoValidationError):
        exc = drf_exceptions.ValidationError(as_serializer_error(exc))
    return _drf_exception_handler(exc, context)
