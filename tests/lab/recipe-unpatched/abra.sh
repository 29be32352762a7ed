# abra.sh of the UNPATCHED recipe model (lab fixture).
#
# abra sources this file to get the versions of the configs (Swarm configs are immutable: bump
# the version whenever the file changes), and runs the functions below inside a service's
# container with `abra app cmd <app> <service> <function>`. tests/lab/lab.py does the same
# (copies this file into the container and runs the function) for its post-deploy step.
export ENTRYPOINT_SH_VERSION=v1

# Create or update the database schema (run once after every deploy: `abra app cmd <app> backend migrate`).
migrate() {
  python manage.py migrate --noinput
}

# Queue Drive's WOPI configuration task again (what an operator does by hand today when
# Collabora was not ready at install time).
configure_wopi() {
  python manage.py trigger_wopi_configuration
}
