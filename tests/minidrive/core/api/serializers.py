"""Serializers of the mini Drive API (reduced Drive serializers)."""

from rest_framework import serializers

from core import models
from wopi import utils as wopi_utils


class UserSerializer(serializers.ModelSerializer):
    """The current user, with Drive's ``users/me`` field names (those this model has)."""

    class Meta:
        model = models.User
        fields = ["id", "email", "full_name", "short_name", "language"]
        read_only_fields = fields


class ItemSerializer(serializers.ModelSerializer):
    """A file item; ``is_wopi_supported`` is computed from the cached WOPI configuration like Drive's."""

    is_wopi_supported = serializers.SerializerMethodField()

    class Meta:
        model = models.Item
        fields = ["id", "title", "filename", "mimetype", "size", "type", "upload_state", "is_wopi_supported"]
        read_only_fields = fields

    def get_is_wopi_supported(self, item):
        """Whether the item can be opened in a WOPI client for the requesting user."""
        request = self.context.get("request")
        return wopi_utils.is_item_wopi_supported(item, request.user if request else None)
