"""Models of the mini Drive.

``User`` imitates Drive's ``core.User`` where the OIDC login code touches it: UUID primary key, a
unique nullable ``sub``, ``email``, ``full_name``, ``short_name``, ``claims``, ``language``,
``admin_email`` as USERNAME_FIELD, table ``drive_user``, and the manager's
``get_user_by_sub_or_email`` with Drive's duplicate-email rule.

``Item`` is a much reduced Drive item: a file with a title, filename, mimetype, creator and upload
state, stored under ``MEDIA_ROOT`` instead of S3. Left out: folders and the tree (ltree), accesses,
invitations, teams, trash, timezone, column preferences, invitations conversion on user save.
"""

import os
import uuid

from django.conf import settings
from django.contrib.auth import models as auth_models
from django.contrib.auth.base_user import AbstractBaseUser
from django.core import validators
from django.db import models


class DuplicateEmailError(Exception):
    """Raised when an email is already associated with a pre-existing user."""

    def __init__(self, message=None, email=None):
        self.message = message
        self.email = email
        super().__init__(self.message)


class BaseModel(models.Model):
    """UUID primary key and timestamps; validates before saving (like Drive's BaseModel)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, editable=False)
    updated_at = models.DateTimeField(auto_now=True, editable=False)

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        """Call ``full_clean`` before saving."""
        self.full_clean()
        super().save(*args, **kwargs)


class UserManager(auth_models.UserManager):
    """Manager with Drive's lookup by sub, then (optionally) by email."""

    def get_user_by_sub_or_email(self, sub, email):
        """Return the user with this sub; else by email if allowed; refuse a duplicate email."""
        try:
            return self.get(sub=sub)
        except self.model.DoesNotExist as err:
            if not email:
                return None
            if settings.OIDC_FALLBACK_TO_EMAIL_FOR_IDENTIFICATION:
                try:
                    return self.get(email__iexact=email)
                except self.model.DoesNotExist:
                    pass
            elif self.filter(email__iexact=email).exists() and not settings.OIDC_ALLOW_DUPLICATE_EMAILS:
                raise DuplicateEmailError(
                    "We couldn't find a user with this sub but the email is already "
                    "associated with a registered user."
                ) from err
        return None


class User(AbstractBaseUser, BaseModel, auth_models.PermissionsMixin):
    """User authenticated through OIDC (the fields Drive's login path reads and writes)."""

    sub_validator = validators.RegexValidator(
        regex=r"^[\w.@+-:]+\Z",
        message=(
            "Enter a valid sub. This value may contain only letters, numbers, and @/./+/-/_/: characters."
        ),
    )

    sub = models.CharField(
        "sub", max_length=255, unique=True, validators=[sub_validator], blank=True, null=True
    )
    full_name = models.CharField("full name", max_length=100, null=True, blank=True)
    short_name = models.CharField("short name", max_length=100, null=True, blank=True)
    email = models.EmailField("identity email address", blank=True, null=True)
    admin_email = models.EmailField("admin email address", unique=True, blank=True, null=True)
    language = models.CharField(max_length=10, default=None, null=True, blank=True)
    is_device = models.BooleanField(default=False)
    is_staff = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    claims = models.JSONField(blank=True, default=dict)

    objects = UserManager()

    USERNAME_FIELD = "admin_email"
    REQUIRED_FIELDS = []

    class Meta:
        db_table = "drive_user"
        verbose_name = "user"
        verbose_name_plural = "users"

    def __str__(self):
        return self.email or self.admin_email or str(self.id)


class ItemTypeChoices(models.TextChoices):
    """Item types (Drive has folders too; only files exist here)."""

    FOLDER = "folder", "Folder"
    FILE = "file", "File"


class ItemUploadStateChoices(models.TextChoices):
    """Upload states, values as in Drive."""

    PENDING = "pending", "Pending"
    ANALYZING = "analyzing", "Analyzing"
    SUSPICIOUS = "suspicious", "Suspicious"
    FILE_TOO_LARGE_TO_ANALYZE = "file_too_large_to_analyze", "File too large to analyze"
    READY = "ready", "Ready"


class Item(BaseModel):
    """A file uploaded by a user, stored under MEDIA_ROOT/item/<id>/<filename>."""

    title = models.CharField(max_length=255)
    filename = models.CharField(max_length=255)
    mimetype = models.CharField(max_length=255, null=True, blank=True)
    size = models.BigIntegerField(null=True, blank=True)
    type = models.CharField(max_length=10, choices=ItemTypeChoices.choices, default=ItemTypeChoices.FILE)
    upload_state = models.CharField(
        max_length=25, choices=ItemUploadStateChoices.choices, default=ItemUploadStateChoices.PENDING
    )
    creator = models.ForeignKey(User, on_delete=models.CASCADE, related_name="items")

    class Meta:
        db_table = "drive_item"

    def __str__(self):
        return self.title

    @property
    def file_key(self):
        """Storage key of the file, relative to MEDIA_ROOT (Drive: the S3 key ``item/<id>/<filename>``)."""
        return f"item/{self.id}/{self.filename}"

    @property
    def extension(self):
        """Extension of the filename without the dot, or None."""
        _root, ext = os.path.splitext(self.filename or "")
        return ext[1:] if ext else None
