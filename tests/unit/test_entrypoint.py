"""entrypoints/drive_entrypoint.py on real directories, mounts, processes and gunicorn servers.

Runs as root (skipped otherwise): it creates trees with wrong owners, mounts a tmpfs and a bind mount
inside them, races two entrypoints, and runs gunicorn (the version Drive pins, from .venv, and the
newest, from .venv-newest) as uid 1001 through the entrypoint. Everything the app user must read
lives in a world-readable temporary directory under /tmp: the repository's venvs sit below /root
(mode 0700), so gunicorn's package is copied next to the test and run with Debian's /usr/bin/python3
(offline, no pip). The script under test is copied there too, and every test runs from "/": the
repository itself may sit in a directory uid 1001 cannot traverse (CI clones into a 0700 mktemp dir).
"""

import atexit
import fcntl
import json
import os
import select
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EP_SOURCE = ROOT / "entrypoints" / "drive_entrypoint.py"
# A world-readable copy, as in the container (/opt/robust, mode 0555); removed at the end.
_EP_DIR = Path(tempfile.mkdtemp(prefix="ep-script-"))
_EP_DIR.chmod(0o755)
EP = _EP_DIR / "drive_entrypoint.py"
shutil.copy(EP_SOURCE, EP)
EP.chmod(0o555)
atexit.register(shutil.rmtree, _EP_DIR, True)
UID, GID = 1001, 127
APP_PY = "/usr/bin/python3"  # readable and executable by uid 1001 (the venvs' python is under /root)
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

@pytest.fixture(autouse=True)
def _run_from_root_dir(monkeypatch):
    """Children inherit the cwd; gunicorn, for one, refuses to start in one it cannot enter."""
    monkeypatch.chdir("/")


pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, mount, privilege drop)"),
    pytest.mark.skipif(not os.path.exists(APP_PY), reason=f"needs {APP_PY}"),
]

CHILD = r"""
import json, os, sys
out = {"resuid": os.getresuid(), "resgid": os.getresgid(), "groups": os.getgroups(),
       "home": os.environ.get("HOME"), "xdg": os.environ.get("XDG_RUNTIME_DIR"), "argv": sys.argv[1:]}
try:
    os.setuid(0)
    out["setuid0"] = "succeeded"
except PermissionError:
    out["setuid0"] = "PermissionError"
except OSError as exc:
    out["setuid0"] = repr(exc)
for key in ("home", "xdg"):
    path = out[key]
    if path:
        st = os.stat(path)
        out[key + "_stat"] = [st.st_uid, st.st_gid, oct(st.st_mode & 0o7777)]
        probe = os.path.join(path, "write-probe")
        with open(probe, "w") as fh:
            fh.write("ok")
        os.unlink(probe)
        out[key + "_writable"] = True
with open("/proc/self/status") as fh:
    out["caps"] = {l.split(":")[0]: l.split()[1] for l in fh if l.startswith("Cap")}
print(json.dumps(out))
"""


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def space():
    """A world-traversable scratch directory (pytest's tmp_path is 0700: uid 1001 cannot enter it)."""
    base = Path(tempfile.mkdtemp(prefix="ep-test-", dir="/tmp"))
    base.chmod(0o755)
    (base / "child.py").write_text(CHILD)
    homes = base / "homes"
    homes.mkdir()
    os.chown(homes, UID, GID)
    yield base
    subprocess.run(["umount", "-R", "-l", str(base)], capture_output=True)  # in case a test failed mid-way
    shutil.rmtree(base, ignore_errors=True)


def env_for(space, **extra):
    env = {"PATH": SAFE_PATH, "APP_HOME": str(space / "homes" / "home"), "LANG": "C.UTF-8"}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_ep(space, cmd, python=None, user=None, timeout=120, **env):
    proc = subprocess.run(
        [python or (APP_PY if user is not None else sys.executable), str(EP), "--", *cmd],
        env=env_for(space, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
        user=user,
        group=GID if user is not None else None,
        extra_groups=[] if user is not None else None,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def ep_lines(stderr):
    lines = [ln for ln in stderr.splitlines() if ln.startswith("entrypoint:")]
    return lines


def pass_counts(stderr, path):
    """Parse 'PATH: ownership pass: checked N, changed N, ...' into a dict."""
    for line in ep_lines(stderr):
        head = f"entrypoint: {path}: ownership pass: "
        if line.startswith(head):
            fields = line[len(head):].split(", ")
            out = {}
            for f in fields[:-1]:
                words = f.rsplit(" ", 1)
                out[words[0]] = int(words[1])
            return out
    raise AssertionError(f"no pass line for {path} in:\n{stderr}")


def child_cmd(space, *args):
    return [APP_PY, str(space / "child.py"), *args]


def child_json(proc):
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def owner(path):
    st = os.lstat(path)
    return st.st_uid, st.st_gid


def all_owners(root):
    """{relative path: (uid, gid)} of every entry under root, root included, without following links."""
    out = {".": owner(root)}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            out[os.path.relpath(p, root)] = owner(p)
    return out


def make_wrong_tree(root, dirs=5, files=20):
    """A tree with a mix of wrong owners, a fifo, a socket-less special file set and symlinks."""
    root.mkdir(parents=True, exist_ok=True)
    owners = [(0, 0), (UID, 0), (0, GID), (5000, 5000), (UID, GID)]
    wrong = 0
    k = 0
    for d in range(dirs):
        sub = root / f"dir{d}" / "nested"
        sub.mkdir(parents=True)
        for p in (root / f"dir{d}", sub):
            o = owners[k % len(owners)]
            k += 1
            os.chown(p, *o)
            wrong += o != (UID, GID)
        for f in range(files):
            p = sub / f"f{f}.txt"
            p.write_text("x")
            o = owners[k % len(owners)]
            k += 1
            os.chown(p, *o)
            wrong += o != (UID, GID)
    os.mkfifo(root / "fifo")
    link = root / "rel-link"
    link.symlink_to("dir0/nested/f0.txt")
    os.lchown(link, 0, 0)
    os.chown(root, 0, 0)
    return wrong + 3  # fifo, link, root


# --------------------------------------------------------------------------- ownership pass


@pytest.mark.parametrize("jobs", ["1", "3"])
def test_fixes_wrong_owners_and_second_run_changes_nothing(space, jobs):
    tree = space / "media"
    wrong = make_wrong_tree(tree, dirs=40, files=10)  # 40 top dirs: enough to share among 3 workers
    before = all_owners(tree)
    assert sum(o != (UID, GID) for o in before.values()) == wrong

    first = run_ep(space, child_cmd(space), FIX_PERMS_PATHS=tree, FIX_PERMS_JOBS=jobs)
    assert child_json(first)["resuid"] == [UID, UID, UID]
    assert set(all_owners(tree).values()) == {(UID, GID)}
    counts = pass_counts(first.stderr, tree)
    assert counts["changed"] == wrong
    assert counts["checked"] == len(before)
    assert counts["errors"] == 0

    second = run_ep(space, child_cmd(space), FIX_PERMS_PATHS=tree, FIX_PERMS_JOBS=jobs)
    counts2 = pass_counts(second.stderr, tree)
    assert counts2["changed"] == 0
    assert counts2["checked"] == len(before)


def test_symlinks_are_not_followed(space):
    tree = space / "media"
    tree.mkdir()
    outside = space / "outside"
    outside.mkdir()
    secret = outside / "secret"
    secret.write_text("root's")
    os.chown(secret, 0, 0)
    os.chown(outside, 0, 0)
    (tree / "to-file").symlink_to(secret)
    (tree / "to-dir").symlink_to(outside)
    (tree / "dangling").symlink_to(space / "nowhere")

    proc = run_ep(space, ["true"], FIX_PERMS_PATHS=tree)
    assert proc.returncode == 0, proc.stderr
    assert owner(secret) == (0, 0)
    assert owner(outside) == (0, 0)
    for name in ("to-file", "to-dir", "dangling"):
        assert owner(tree / name) == (UID, GID)  # the link itself (lchown)
    assert pass_counts(proc.stderr, tree)["checked"] == 4


def test_tmpfs_inside_the_tree_is_not_entered(space):
    tree = space / "media"
    mnt = tree / "mnt"
    mnt.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "ep-test", str(mnt)], check=True)
    try:
        (mnt / "inside").write_text("x")
        os.chown(mnt / "inside", 0, 0)
        (tree / "sibling").write_text("x")
        proc = run_ep(space, ["true"], FIX_PERMS_PATHS=tree)
        assert proc.returncode == 0, proc.stderr
        assert owner(mnt) == (0, 0)
        assert owner(mnt / "inside") == (0, 0)
        assert owner(tree / "sibling") == (UID, GID)
        assert pass_counts(proc.stderr, tree)["other-fs skipped"] == 1
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_without_proc_the_device_check_alone_keeps_a_tmpfs_out(space):
    """In a private mount namespace with /proc hidden, mountinfo is unreadable: st_dev must suffice."""
    if not shutil.which("unshare"):
        pytest.skip("needs unshare")
    tree = space / "media"
    mnt = tree / "mnt"
    mnt.mkdir(parents=True)
    script = (
        f"mount -t tmpfs -o size=1m ep-test {mnt} && touch {mnt}/inside && "
        f"mount -t tmpfs -o size=1m hide-proc /proc && "
        f"exec {sys.executable} {EP} -- sh -c 'stat -c %u:%g {mnt} {mnt}/inside'"
    )
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        env=env_for(space, FIX_PERMS_PATHS=tree), capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout.split() == ["0:0", "0:0"], proc.stdout + proc.stderr
    assert pass_counts(proc.stderr, tree)["other-fs skipped"] == 1
    assert owner(tree) == (UID, GID)


def test_bind_mount_of_the_same_filesystem_is_not_entered(space):
    tree = space / "media"
    bind = tree / "bind"
    bind.mkdir(parents=True)
    src = space / "elsewhere"
    src.mkdir()
    (src / "file").write_text("x")
    os.chown(src / "file", 0, 0)
    subprocess.run(["mount", "--bind", str(src), str(bind)], check=True)
    try:
        assert os.stat(bind).st_dev == os.stat(tree).st_dev  # st_dev alone cannot tell
        proc = run_ep(space, ["true"], FIX_PERMS_PATHS=tree)
        assert proc.returncode == 0, proc.stderr
        assert owner(src / "file") == (0, 0)
        assert owner(src) == (0, 0)
        assert pass_counts(proc.stderr, tree)["other-fs skipped"] == 1
    finally:
        subprocess.run(["umount", str(bind)], check=True)


def test_hard_linked_file_is_left_and_reported(space):
    tree = space / "media"
    tree.mkdir()
    outside = space / "shadow-like"
    outside.write_text("not yours")
    os.chown(outside, 0, 0)
    os.link(outside, tree / "innocent-looking")
    (tree / "plain").write_text("x")

    proc = run_ep(space, ["true"], FIX_PERMS_PATHS=tree)
    assert proc.returncode == 0, proc.stderr
    assert owner(outside) == (0, 0)
    assert owner(tree / "plain") == (UID, GID)
    assert pass_counts(proc.stderr, tree)["hardlinks skipped"] == 1
    report = [ln for ln in ep_lines(proc.stderr) if "hard-linked" in ln]
    assert len(report) == 1 and "innocent-looking" in report[0], proc.stderr


def test_missing_path_is_created_with_the_right_owner(space):
    target = space / "a" / "b" / "media"
    proc = run_ep(space, ["true"], FIX_PERMS_PATHS=target)
    assert proc.returncode == 0, proc.stderr
    assert target.is_dir()
    assert owner(target) == (UID, GID)
    assert owner(space / "a") == (0, 0) and owner(space / "a" / "b") == (0, 0)
    assert any("created" in ln for ln in ep_lines(proc.stderr))


@pytest.mark.parametrize("which", ["last", "parent"])
def test_configured_symlink_is_refused(space, which):
    real = space / "real"
    (real / "media").mkdir(parents=True)
    (real / "media" / "file").write_text("x")
    os.chown(real / "media" / "file", 0, 0)
    if which == "last":
        (space / "link").symlink_to(real / "media")
        configured = space / "link"
    else:
        (space / "link").symlink_to(real)
        configured = space / "link" / "media"
    marker = space / "ran"
    proc = run_ep(space, ["touch", str(marker)], FIX_PERMS_PATHS=configured)
    assert proc.returncode == 78
    lines = ep_lines(proc.stderr)
    assert len(lines) == 1 and "symlink" in lines[0] and str(configured) in lines[0], proc.stderr
    assert proc.stderr.strip() == lines[0]
    assert owner(real / "media" / "file") == (0, 0)
    assert not marker.exists()


def test_configured_path_that_is_a_file_is_refused(space):
    f = space / "file"
    f.write_text("x")
    proc = run_ep(space, ["true"], FIX_PERMS_PATHS=f)
    assert proc.returncode == 78
    assert ep_lines(proc.stderr) == [proc.stderr.strip()]
    assert "not a directory" in proc.stderr


def test_tree_deeper_than_path_max_and_the_fd_limit(space):
    """Depth 2100 ("d/" * 2100 > PATH_MAX) with RLIMIT_NOFILE soft 256: only an fd walk that raises
    its soft limit gets to the bottom; the command still starts with the soft limit it was given."""
    import resource

    tree = space / "media"
    tree.mkdir()
    depth = 2100
    fd = os.open(tree, os.O_RDONLY | os.O_DIRECTORY)
    fds = [fd]
    for _ in range(depth):
        os.mkdir("d", dir_fd=fds[-1])
        fds.append(os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fds[-1]))
    with open(os.open("bottom", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fds[-1]), "w"):
        pass
    bottom_dir = fds[-1]
    for f in fds[:-1]:
        os.close(f)
    try:
        assert os.stat("bottom", dir_fd=bottom_dir).st_uid == 0
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        assert hard > depth + 100, "this machine's hard limit is too low for the test"

        def limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))

        proc = subprocess.run(
            [sys.executable, str(EP), "--", "sh", "-c", "ulimit -n"],
            env=env_for(space, FIX_PERMS_PATHS=tree, FIX_PERMS_JOBS=1),
            capture_output=True, text=True, timeout=120, preexec_fn=limit,
        )
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr
        assert proc.stdout.strip() == "256"
        counts = pass_counts(proc.stderr, tree)
        assert counts["errors"] == 0 and counts["changed"] == depth + 2, proc.stderr
        st = os.stat("bottom", dir_fd=bottom_dir)
        assert (st.st_uid, st.st_gid) == (UID, GID)
    finally:
        os.close(bottom_dir)
        subprocess.run(["rm", "-rf", str(tree)], check=False)


# --------------------------------------------------------------------------- locking and races


def test_two_entrypoints_racing_on_the_same_tree(space):
    tree = space / "media"
    for d in range(100):
        sub = tree / f"d{d:03d}"
        sub.mkdir(parents=True)
        for f in range(100):
            (sub / f"f{f}").touch()
    subprocess.run(["chown", "-R", "0:0", str(tree)], check=True)
    total = 1 + 100 + 100 * 100
    cmd = [sys.executable, str(EP), "--", *child_cmd(space)]
    env = env_for(space, FIX_PERMS_PATHS=tree)
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err
        assert "Traceback" not in err
        assert json.loads(out.strip().splitlines()[-1])["resuid"] == [UID, UID, UID]
    changed = [pass_counts(err, tree)["changed"] for _out, err in results]
    assert sum(changed) == total, (changed, [e for _o, e in results])  # no entry changed twice
    assert set(all_owners(tree).values()) == {(UID, GID)}


def _read_line_until(stream, needle, deadline):
    buf = ""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([stream], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(stream.fileno(), 4096).decode()
        if not chunk:
            break
        buf += chunk
        if needle in buf:
            return buf
    raise AssertionError(f"{needle!r} not seen; got {buf!r}")


def test_waits_for_the_lock_held_on_the_volume(space):
    tree = space / "media"
    tree.mkdir()
    (tree / "f").touch()
    os.chown(tree / "f", 0, 0)
    holder = os.open(tree, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        p = subprocess.Popen(
            [sys.executable, str(EP), "--", "true"],
            env=env_for(space, FIX_PERMS_PATHS=tree),
            stderr=subprocess.PIPE,
        )
        seen = _read_line_until(p.stderr, "waiting for another container", time.monotonic() + 30)
        time.sleep(0.3)
        assert p.poll() is None
        assert owner(tree / "f") == (0, 0)  # nothing walked while the lock is held
    finally:
        os.close(holder)
    rest = p.communicate(timeout=60)[1].decode()
    assert p.returncode == 0, seen + rest
    assert owner(tree / "f") == (UID, GID)
    assert pass_counts(seen + rest, tree)["changed"] == 2


def test_lock_timeout_runs_the_pass_anyway(space):
    tree = space / "media"
    tree.mkdir()
    holder = os.open(tree, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        proc = run_ep(space, ["true"], FIX_PERMS_PATHS=tree, FIX_PERMS_LOCK_TIMEOUT="0.5", timeout=30)
    finally:
        os.close(holder)
    assert proc.returncode == 0, proc.stderr
    assert any("still locked" in ln for ln in ep_lines(proc.stderr)), proc.stderr
    assert owner(tree) == (UID, GID)


# --------------------------------------------------------------------------- privilege drop, HOME


def test_child_identity_and_private_home(space):
    proc = run_ep(space, child_cmd(space, "arg with space", "--flag"), FIX_PERMS_PATHS="")
    out = child_json(proc)
    assert out["resuid"] == [UID, UID, UID]
    assert out["resgid"] == [GID, GID, GID]
    assert out["groups"] == [GID]
    assert out["setuid0"] == "PermissionError"
    assert out["argv"] == ["arg with space", "--flag"]
    assert out["home"] == str(space / "homes" / "home")
    assert out["home_stat"] == [UID, GID, "0o700"] and out["home_writable"]
    assert out["xdg"] == out["home"] + "/run"
    assert out["xdg_stat"] == [UID, GID, "0o700"] and out["xdg_writable"]
    assert all(int(v, 16) == 0 for k, v in out["caps"].items() if k in ("CapPrm", "CapEff", "CapAmb"))


def test_foreign_home_is_not_reused(space):
    foreign = space / "homes" / "home"
    foreign.mkdir()
    os.chown(foreign, 5000, 5000)
    out = child_json(run_ep(space, child_cmd(space)))
    assert out["home"] != str(foreign) and out["home"].startswith("/tmp/drive-home-")
    assert out["home_stat"] == [UID, GID, "0o700"]
    shutil.rmtree(out["home"])


def test_custom_ids(space):
    tree = space / "media"
    tree.mkdir()
    out = child_json(run_ep(space, child_cmd(space), APP_UID=2345, APP_GID=3456, FIX_PERMS_PATHS=tree,
                            APP_HOME=space / "homes"))  # parent /tmp/ep-test-*: not writable by 2345
    assert out["resuid"] == [2345] * 3 and out["groups"] == [3456]
    assert owner(tree) == (2345, 3456)
    assert out["home_stat"][:2] == [2345, 3456]
    shutil.rmtree(out["home"], ignore_errors=True)


# --------------------------------------------------------------------------- not root


def test_not_root_skips_the_fix_and_warns_per_unwritable_path(space):
    mine = space / "mine"
    mine.mkdir()
    os.chown(mine, UID, GID)
    roots = space / "roots"
    roots.mkdir()
    (roots / "f").touch()
    missing = space / "missing"
    proc = run_ep(
        space,
        child_cmd(space),
        user=UID,
        FIX_PERMS_PATHS=f"{mine}:{roots}:{missing}",
        HOME="/root",
    )
    out = child_json(proc)
    assert out["resuid"] == [UID, UID, UID] and out["groups"] == []  # as started: not changed
    lines = ep_lines(proc.stderr)
    assert any("not root" in ln for ln in lines)
    warned = [ln for ln in lines if "may fail to write" in ln]
    assert len(warned) == 2, lines
    assert str(roots) in warned[0] + warned[1] and str(missing) in warned[0] + warned[1]
    assert owner(roots / "f") == (0, 0) and not missing.exists()
    assert out["home"] == str(space / "homes" / "home") and out["home_writable"]


# --------------------------------------------------------------------------- configuration, exec


@pytest.mark.parametrize(
    "env",
    [
        {"APP_UID": "abc"},
        {"APP_UID": "0"},
        {"APP_GID": "-1"},
        {"APP_UID": "4294967295"},
        {"APP_GID": "1.5"},
        {"FIX_PERMS_PATHS": "relative/path"},
        {"FIX_PERMS_PATHS": "/"},
        {"FIX_PERMS_PATHS": "/tmp/../etc"},
        {"FIX_PERMS_PATHS": "/tmp/a\nb"},
        {"FIX_PERMS_LOCK_TIMEOUT": "soon"},
        {"FIX_PERMS_LOCK_TIMEOUT": "nan"},
        {"FIX_PERMS_JOBS": "0"},
        {"APP_HOME": "home"},
        {"APP_UID": "9" * 5000},  # int() refuses > 4300 digits (3.11+): was exit 70, not 78
        {"APP_GID": "0" * 4999 + "12345678901"},
        {"FIX_PERMS_JOBS": "9" * 5000},
    ],
    ids=lambda env: ",".join(f"{k}={v[:20]}" for k, v in env.items()),
)
def test_bad_environment_exits_78_with_one_line(space, env):
    marker = space / "ran"
    proc = run_ep(space, ["touch", str(marker)], **env)
    assert proc.returncode == 78, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("entrypoint: configuration error:"), proc.stderr
    assert not marker.exists()


def test_exec_failures(space):
    (space / "not-exec").write_text("#!/bin/sh\n")
    cases = [
        ([], 78),
        (["no-such-command-xyz"], 127),
        ([str(space / "nope")], 127),
        ([str(space / "not-exec")], 126),
    ]
    for cmd, code in cases:
        proc = subprocess.run(
            [sys.executable, str(EP), "--", *cmd],
            env=env_for(space), capture_output=True, text=True, timeout=30,
        )
        assert proc.returncode == code, (cmd, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert proc.stderr.strip().splitlines()[-1].startswith("entrypoint:")


def test_dash_dash_is_optional(space):
    proc = subprocess.run(
        [sys.executable, str(EP), *child_cmd(space)],
        env=env_for(space), capture_output=True, text=True, timeout=30,
    )
    assert child_json(proc)["resuid"] == [UID, UID, UID]


@pytest.mark.parametrize("version", ["3.9", "3.13"])
def test_runs_on_other_pythons(space, version):
    """The image has 3.13; the file promises 3.9+. Uses pyenv's builds when this machine has them."""
    found = sorted(Path("/root/.pyenv/versions").glob(f"{version}.*/bin/python{version}"))
    if not found:
        pytest.skip(f"no python{version} here")
    tree = space / "media"
    make_wrong_tree(tree, dirs=2, files=3)
    proc = run_ep(space, child_cmd(space), python=str(found[-1]), FIX_PERMS_PATHS=tree)
    assert child_json(proc)["groups"] == [GID]
    assert set(all_owners(tree).values()) == {(UID, GID)}


# --------------------------------------------------------------------------- gunicorn as uid 1001

APP = """
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"served by uid %d" % __import__("os").getuid()]
"""


def _gunicorn_copy(venv, dest):
    """Copy gunicorn (and packaging) out of a venv into a directory uid 1001 can read."""
    py = ROOT / venv / "bin" / "python"
    if not py.exists():
        pytest.skip(f"{venv} missing")
    info = subprocess.run(
        [str(py), "-c", "import gunicorn as g, os; print(g.__version__, os.path.dirname(g.__path__[0]))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip().split(" ", 1)
    version, site = info[0], Path(info[1])
    dest.mkdir()
    for pkg in ("gunicorn", "packaging"):
        if (site / pkg).is_dir():
            shutil.copytree(site / pkg, dest / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(["chmod", "-R", "a+rX", str(dest)], check=True)
    return version


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("venv", [".venv", pytest.param(".venv-newest", marks=pytest.mark.newest)])
def test_gunicorn_through_the_entrypoint_serves_without_permission_errors(space, venv):
    site = space / "site"
    version = _gunicorn_copy(venv, site)
    if venv == ".venv":
        assert version == "25.3.0"
    (space / "app").mkdir()
    (space / "app" / "wsgiapp.py").write_text(APP)
    port = _free_port()
    cmd = [sys.executable, str(EP), "--", APP_PY, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
           "--workers", "1", "--chdir", str(space / "app"), "wsgiapp:application"]
    env = env_for(space, PYTHONPATH=site, FIX_PERMS_PATHS=space / "media")
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    body = None
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and p.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
                    body = resp.read().decode()
                break
            except OSError:
                time.sleep(0.2)
        ctl = space / "homes" / "home" / "run" / "gunicorn.ctl"
        for _ in range(50):  # the control server starts in a thread next to the workers
            if ctl.exists():
                break
            time.sleep(0.1)
        ctl_stat = os.lstat(ctl) if ctl.exists() else None
    finally:
        p.terminate()
        logs = p.communicate(timeout=60)[0].decode()
    assert body == f"served by uid {UID}", logs
    assert f"Starting gunicorn {version}" in logs, logs
    for bad in ("Permission denied", "Errno 13", "Control server error", "Failed to start control socket"):
        assert bad not in logs, logs
    assert ctl_stat is not None and stat.S_ISSOCK(ctl_stat.st_mode), logs  # the control socket works
    assert (ctl_stat.st_uid, stat.S_IMODE(ctl_stat.st_mode)) == (UID, 0o600)
    assert "Traceback" not in logs


# --------------------------------------------------------------------------- review fixes


def test_bind_mounted_single_file_is_left_alone(space):
    """A file bind-mounted into the volume from the same filesystem (a Swarm config's source lives in
    the engine's data directory, usually the volume's filesystem): st_dev cannot tell, mountinfo can.
    Before the fix only directories were checked against mountinfo and the source file was chowned."""
    tree = space / "media"
    tree.mkdir()
    target = tree / "mounted-file"
    target.write_text("")
    src = space / "engine-owned"
    src.write_text("config")
    os.chown(src, 0, 0)
    (tree / "plain").write_text("x")
    subprocess.run(["mount", "--bind", str(src), str(target)], check=True)
    try:
        assert os.stat(target).st_dev == os.stat(tree).st_dev
        proc = run_ep(space, ["true"], FIX_PERMS_PATHS=tree)
        assert proc.returncode == 0, proc.stderr
        assert owner(src) == (0, 0)
        assert owner(tree / "plain") == (UID, GID)
        assert pass_counts(proc.stderr, tree)["other-fs skipped"] == 1
    finally:
        subprocess.run(["umount", str(target)], check=True)


def _import_entrypoint():
    import importlib

    return importlib.import_module("drive_entrypoint")


@pytest.mark.parametrize("fail_from", [0, 1], ids=["no-worker", "second-worker"])
def test_a_worker_that_cannot_be_forked_has_its_share_walked_by_the_parent(space, monkeypatch, fail_from):
    """fork() fails with EAGAIN under a container's pids limit. Before the fix the OSError escaped:
    exit 70 and no gunicorn, on every restart."""
    ep = _import_entrypoint()
    tree = space / "media"
    for d in range(60):  # > FORK_ITEMS_PER_JOB * jobs directories at the top: the walk is shared out
        (tree / f"d{d}" / "sub").mkdir(parents=True)
        (tree / f"d{d}" / "sub" / "f").touch()
    subprocess.run(["chown", "-R", "0:0", str(tree)], check=True)
    real_fork = os.fork
    calls = []

    def fork():
        calls.append(1)
        if len(calls) > fail_from:
            raise OSError(11, "Resource temporarily unavailable")
        return real_fork()

    monkeypatch.setattr(ep.os, "fork", fork)
    monkeypatch.setattr(ep, "say", lambda msg: said.append(msg))
    said = []
    fd = os.open(tree, os.O_RDONLY | os.O_DIRECTORY)
    try:
        tally = ep.Tally()
        ep.fix_tree(fd, UID, GID, set(), tally, jobs=3)
    finally:
        os.close(fd)
    assert calls, "the walk was not shared out: the test does not exercise fork"
    assert set(all_owners(tree).values()) == {(UID, GID)}
    assert (tally.checked, tally.changed, tally.errors) == (1 + 60 * 3, 1 + 60 * 3, 0)
    assert any("cannot start ownership worker" in m for m in said), said


def test_created_path_is_traversable_under_a_restrictive_umask(space):
    target = space / "a" / "b" / "media"
    proc = subprocess.run(
        [sys.executable, str(EP), "--", APP_PY, "-c", f"open({str(target / 'w')!r}, 'w').write('ok')"],
        env=env_for(space, FIX_PERMS_PATHS=target), capture_output=True, text=True, timeout=60,
        preexec_fn=lambda: os.umask(0o077),
    )
    assert proc.returncode == 0, proc.stderr
    for p in (space / "a", space / "a" / "b", target):
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o755, p
    assert owner(space / "a") == (0, 0) and owner(target) == (UID, GID)
    assert (target / "w").read_text() == "ok"


def test_created_path_whose_chown_fails_is_not_an_internal_error(space, monkeypatch):
    """fchown of a just-created directory can fail (an id not mapped in a user namespace): the pass
    retries and reports it like any entry; it used to escape as an OSError (exit 70)."""
    ep = _import_entrypoint()

    def refuse(*_args):
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(ep.os, "fchown", refuse)
    target = space / "new" / "media"
    fd, created = ep.open_config_dir(str(target), UID, GID)
    try:
        assert created is False and target.is_dir()
        tally = ep.Tally()
        ep.fix_tree(fd, UID, GID, set(), tally)
        assert tally.errors == 1 and "Invalid argument" in tally.error_notes[0]
    finally:
        os.close(fd)
