"""``manage.py trigger_wopi_configuration``: queue the WOPI configuration task (does not run it)."""

from django.core.management.base import BaseCommand

from wopi.tasks.configure_wopi import configure_wopi_clients


class Command(BaseCommand):
    """Queue ``configure_wopi_clients`` on the celery broker, as Drive's command does."""

    help = "Queue the celery task that reads the WOPI clients' discovery."

    def handle(self, *args, **options):
        """Send the task; with CELERY_TASK_ALWAYS_EAGER (Test) it runs in-process."""
        configure_wopi_clients.delay()
