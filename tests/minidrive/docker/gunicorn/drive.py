"""gunicorn configuration, the same values as Drive's ``/usr/local/etc/gunicorn/drive.py`` (v0.21.1).

Nothing is added: in particular the control socket that gunicorn >= 25.1 opens by default is left on,
as in Drive, so the lab reproduces its "Control server error: [Errno 13] Permission denied" when the
process runs as 1001:127 without a writable HOME or XDG_RUNTIME_DIR.
"""

bind = ["0.0.0.0:8000"]
name = "drive"
python_path = "/app"

graceful_timeout = 90
timeout = 90
workers = 3

accesslog = "-"
errorlog = "-"
loglevel = "info"
