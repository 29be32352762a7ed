"""Viewsets of the mini Drive API.

* ``GET /api/v1.0/users/me/`` (Drive's ``UserViewSet.get_me``): the authenticated user, 401 otherwise.
* ``POST /api/v1.0/items/`` (multipart ``file``, optional ``title``): stores the file under
  ``MEDIA_ROOT/item/<id>/<filename>`` and marks it ready. Drive instead returns an S3 upload policy and
  finishes with ``upload-ended``; here the write to the media directory is the point (it fails when the
  directory is not writable by the process user).
* ``GET /api/v1.0/items/`` and ``GET /api/v1.0/items/<id>/``: the user's own items.
* ``GET /api/v1.0/items/<id>/wopi/`` (Drive's ``ItemViewSet.wopi``): 400 with Drive's message
  "This item does not suport WOPI integration." (Drive's spelling) when no cached WOPI configuration
  applies, else 200 with ``access_token``, ``access_token_ttl`` and ``launch_url``.

Left out: Drive's access model (only the creator sees an item here), folders, sharing, the WOPI host
endpoints; the access token is random and not stored (Drive keeps it in the cache for the WOPI host).
"""

import mimetypes
import secrets
import time

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from rest_framework import decorators, exceptions, mixins, permissions, status, viewsets
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.response import Response

from core import models
from core.api import serializers
from wopi.utils import compute_wopi_launch_url, get_wopi_client_config


class UserViewSet(viewsets.GenericViewSet):
    """Users endpoint; only ``me`` exists here."""

    permission_classes = [permissions.IsAuthenticated]
    serializer_class = serializers.UserSerializer
    queryset = models.User.objects.all()

    @decorators.action(detail=False, methods=["get"], url_name="me", url_path="me")
    def get_me(self, request):
        """Return information on the logged-in user."""
        return Response(self.get_serializer(request.user).data)


class ItemViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Files of the logged-in user: upload, list, retrieve, open for edit (WOPI)."""

    permission_classes = [permissions.IsAuthenticated]
    serializer_class = serializers.ItemSerializer
    parser_classes = [MultiPartParser, JSONParser]

    def get_queryset(self):
        """Only the items the user created."""
        return models.Item.objects.filter(creator=self.request.user).order_by("-created_at")

    def create(self, request, *args, **kwargs):
        """Store an uploaded file under MEDIA_ROOT and create its item."""
        upload = request.FILES.get("file")
        if upload is None:
            raise exceptions.ValidationError({"file": "This field is required."})
        filename = upload.name.replace("/", "_").replace("\\", "_")
        mimetype = upload.content_type
        if not mimetype or mimetype == "application/octet-stream":
            mimetype = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        with transaction.atomic():
            item = models.Item(
                title=request.data.get("title") or filename,
                filename=filename,
                mimetype=mimetype,
                size=upload.size,
                creator=request.user,
            )
            item.save()
            saved = default_storage.save(item.file_key, upload)
            item.filename = saved.rsplit("/", 1)[-1]
            item.upload_state = models.ItemUploadStateChoices.READY
            item.save()
        return Response(self.get_serializer(item).data, status=status.HTTP_201_CREATED)

    @decorators.action(detail=True, methods=["get"], url_path="wopi")
    def wopi(self, request, *args, **kwargs):
        """Start a WOPI session: the launch URL of the client that edits this item."""
        item = self.get_object()
        wopi_client = get_wopi_client_config(item, request.user)
        if not wopi_client:
            raise exceptions.ValidationError({"detail": "This item does not suport WOPI integration."})

        access_token = secrets.token_urlsafe(32)
        access_token_ttl = int(round((time.time() + settings.WOPI_ACCESS_TOKEN_TIMEOUT) * 1000))
        get_file_info = f"/api/{settings.API_VERSION}/wopi/files/{item.id}/"
        language = request.user.language or settings.LANGUAGE_CODE
        launch_url = compute_wopi_launch_url(wopi_client.get("launch_url"), get_file_info, language)
        return Response(
            {"access_token": access_token, "access_token_ttl": access_token_ttl, "launch_url": launch_url},
            status=status.HTTP_200_OK,
        )
