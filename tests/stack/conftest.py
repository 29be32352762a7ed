"""testinfra suite against a DEPLOYED lasuite-drive stack (lab or real; cc-ci runs it unchanged).

    pytest tests/stack --stack NAME [--service-backend backend] [--service-collabora collabora] …

Containers are found by the Swarm label ``com.docker.swarm.service.name=<stack>_<service>``.
Only containers that have ``/bin/sh`` (backend, celery) are entered, with testinfra's
``docker://`` backend (``docker exec``); Collabora (distroless from 26.04.2 on) is only read from
the host with ``docker inspect``. Nothing here skips: a missing stack, service or option fails
the run and says why.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import testinfra
from stackhelpers import HERE, Docker, docker_binary, stack_snapshot


def pytest_addoption(parser):
    g = parser.getgroup("stack", "deployed lasuite-drive stack (tests/stack)")
    g.addoption("--stack", help="Swarm stack name (required), e.g. drivelab or the abra app's STACK_NAME")
    g.addoption("--service-backend", default="backend")
    g.addoption("--service-collabora", default="collabora")
    g.addoption("--service-celery", default="celery-worker")
    g.addoption("--service-celery-beat", default="celery-beat")
    g.addoption("--host-header", default=None,
                help="public host name the backend accepts (default: first of the backend's "
                     "DJANGO_ALLOWED_HOSTS)")
    g.addoption("--backend-url", default="http://127.0.0.1:8000",
                help="the backend, seen from inside its container")
    g.addoption("--oidc-user", default="alice")
    g.addoption("--oidc-password", default="")
    g.addoption("--login-path", default="/api/v1.0/authenticate/")
    g.addoption("--me-path", default="/api/v1.0/users/me/")
    g.addoption("--media-path", default="/data/media")
    g.addoption("--app-uid", type=int, default=1001)
    g.addoption("--app-gid", type=int, default=127)
    g.addoption("--collabora-port", type=int, default=9980)
    g.addoption("--collabora-discovery-path", default="/hosting/discovery")
    g.addoption("--converge-timeout", type=float, default=300.0,
                help="seconds to wait for every service to be running and healthy before testing")
    g.addoption("--collabora-timeout", type=float, default=600.0,
                help="seconds a restarted Collabora may take to become healthy")
    g.addoption("--docker", default=None, help="docker CLI (default $LAB_DOCKER, the lab engine's, or PATH)")


def pytest_configure(config):
    if config.getoption("--stack", default=None) is None and _collecting_stack_tests(config):
        raise pytest.UsageError("tests/stack needs --stack NAME (the deployed stack to test)")


def _collecting_stack_tests(config) -> bool:
    return any(Path(str(a).split("::")[0]).resolve().is_relative_to(HERE) or HERE.is_relative_to(
        Path(str(a).split("::")[0]).resolve()) for a in config.args)


# ------------------------------------------------------------------------------------------------
# fixtures
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def opts(request):
    return request.config.option


@pytest.fixture(scope="session")
def stack(opts):
    return opts.stack


@pytest.fixture(scope="session")
def docker(opts):
    return Docker(docker_binary(opts.docker))


@pytest.fixture(scope="session")
def stack_services(docker, stack, opts):
    found = docker.services(stack)
    if not found:
        pytest.fail(f"no Swarm service carries label com.docker.stack.namespace={stack}: "
                    "is the stack deployed?")
    wanted = [opts.service_backend, opts.service_collabora, opts.service_celery]
    missing = [s for s in wanted if s not in found]
    if missing:
        pytest.fail(f"stack {stack} has no service(s) {missing}; it has {sorted(found)} "
                    "(pass --service-backend/--service-collabora/--service-celery)")
    return found


@pytest.fixture(scope="session")
def converged(docker, stack, stack_services, opts):
    """Wait (bounded) until every service runs its replicas, healthy where a healthcheck exists."""
    deadline = time.monotonic() + opts.converge_timeout
    while True:
        snap = stack_snapshot(docker, stack, stack_services)
        if all(s["ok"] for s in snap.values()) or time.monotonic() > deadline:
            return snap
        time.sleep(2)


@pytest.fixture(scope="session")
def backend_container(docker, stack, opts, converged):
    cs = docker.containers(stack, opts.service_backend)
    if not cs:
        pytest.fail(f"no running container for {stack}_{opts.service_backend}")
    return cs[0]


@pytest.fixture(scope="session")
def backend_host(backend_container):
    return testinfra.get_host(f"docker://{backend_container['Id']}")


@pytest.fixture(scope="session")
def celery_host(docker, stack, opts, converged):
    cs = docker.containers(stack, opts.service_celery)
    if not cs:
        pytest.fail(f"no running container for {stack}_{opts.service_celery}")
    return testinfra.get_host(f"docker://{cs[0]['Id']}")


@pytest.fixture(scope="session")
def host_header(opts, backend_container):
    if opts.host_header:
        return opts.host_header
    for item in backend_container["Config"].get("Env") or []:
        if item.startswith("DJANGO_ALLOWED_HOSTS="):
            value = item.split("=", 1)[1].split(",")[0].strip()
            if value:
                return value
    pytest.fail("backend has no DJANGO_ALLOWED_HOSTS: pass --host-header")
