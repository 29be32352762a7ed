#!/usr/bin/env python3
"""Entrypoint of Drive's backend and celery containers: fix volume ownership, drop root, exec.

Usage (as the container's entrypoint; the container starts as root, ``user: "0:0"``)::

    python3 /opt/robust/drive_entrypoint.py [--] CMD [ARGS...]

Where it runs: inside Drive's backend image (python 3.13 alpine, busybox, venv /app/.venv, WORKDIR
/app), mounted at /opt/robust/drive_entrypoint.py. It needs only the Python standard library (3.9+),
``/proc`` (optional: mount points and the capability check) and a writable ``/tmp`` for the private
HOME. It replaces the image's own ``/usr/local/bin/entrypoint`` and does not edit ``/etc/passwd``.

What it does, as root:
 1. For each path of FIX_PERMS_PATHS: opens it one component at a time from ``/`` with O_NOFOLLOW
    (a symlink anywhere in the configured path is refused: exit 78), creating what is missing (mode
    0755 whatever the umask; the last component owned by APP_UID:APP_GID, missing parents root-owned).
 2. Takes an exclusive ``flock`` on that directory's own file descriptor. The lock lives on the
    volume's root inode, so every container on this host that mounts the same volume (two replicas,
    backend and celery starting together) sees it; nothing is created inside the volume, so there is no
    lock file to follow, to leave behind or to show up in MEDIA_ROOT. The lock dies with the process
    (no stale locks). The waiter then walks a tree that is already right, which costs one lstat per
    entry. If the lock cannot be had (a network filesystem without flock support) or is not released
    within FIX_PERMS_LOCK_TIMEOUT seconds, the pass runs anyway: it is idempotent (chown to the same
    owner twice is harmless), the lock only avoids doing the work twice.
 3. Walks the tree with directory file descriptors (listdir(fd), fstatat/fchownat relative to the
    directory fd, subdirectories opened with O_DIRECTORY|O_NOFOLLOW and checked against the lstat
    result): no path is re-resolved, no symlink is followed, and another filesystem is never entered
    (st_dev differs from the root's, or the entry is a mount point in /proc/self/mountinfo, which
    also catches bind mounts of the same filesystem, of a directory or of a single file: such an
    entry is neither entered nor changed). When more than one CPU is usable the walk is shared out,
    after a short breadth-first start, among FIX_PERMS_JOBS forked workers (each walks whole
    subtrees with its own fds and reports its counts to the parent through a pipe; a worker that
    fails, or cannot be started at all (pids limit), has its share done by the parent). Owner and
    group are changed only where they differ, with lchown semantics: a symlink itself may be
    changed, its target never. A non-directory with more than one hard link and the wrong owner is
    left alone and reported (a hard link can make an inode outside the volume reachable from inside
    it). Note the kernel clears set-user-ID and set-group-ID bits of a file whose owner root
    changes. Remaining race: an entry replaced between its lstat and its chown is changed by name
    (lchown); only the app user writing the volume during start could do that, and it can only
    reach inodes it can already see (link(2) cannot cross a mount).
 4. Drops privileges in gosu's order: ``setgroups([APP_GID])`` (supplementary groups are exactly the
    primary group: no /etc/group lookup, gid 127 is not in the image's /etc/group anyway), then
    ``setgid``, then ``setuid`` (real, effective and saved ids). It then verifies that the ids are
    what was asked, that ``setuid(0)`` fails with PermissionError and that no capability is left
    (CapPrm/CapEff/CapAmb in /proc/self/status); otherwise exit 71.
 5. As the app user (after the drop, so root creates nothing in /tmp): makes the private HOME
    (APP_HOME, mode 0700, owned by the app user; an existing one is reused only when it is a real
    directory owned by the app user, otherwise a fresh randomly named one in /tmp is used) and
    ``$HOME/run`` (0700) as XDG_RUNTIME_DIR.
 6. Execs CMD (PATH lookup), so CMD becomes the process Docker signals (``init: true`` is PID 1).

gunicorn's control socket: gunicorn >= 25.1 opens ``$XDG_RUNTIME_DIR/gunicorn.ctl`` (else
``$HOME/.gunicorn/gunicorn.ctl``) and logs "Permission denied" when it cannot. We choose to make it
work instead of disabling it: XDG_RUNTIME_DIR points at a private 0700 directory of the app user, so
the socket is created there (mode 0600) and ``gunicornc`` stays usable
(``docker exec -u 1001:127 -e XDG_RUNTIME_DIR=/tmp/drive-home-1001/run CONTAINER gunicornc ...``).
Passing ``--no-control-socket`` would need a change to the command line, which gunicorn < 25.1 rejects
as an unknown option; setting the environment works with every version, is ignored by those without
the feature and by celery.

Not root: the ownership fix and the privilege drop are skipped; one warning line per configured path
the current user cannot write; HOME is replaced by the private one only when it is not a writable
directory, XDG_RUNTIME_DIR only when it is set and not a writable directory; then CMD is exec'd.

Environment:
  APP_UID                 uid to run as and to own the paths (default 1001; 1..4294967294)
  APP_GID                 gid to run as and to group-own the paths (default 127; 1..4294967294)
  FIX_PERMS_PATHS         colon-separated absolute directory paths whose ownership is fixed
                          (default empty: none). "/" and paths with "." or ".." components are refused.
  FIX_PERMS_LOCK_TIMEOUT  seconds to wait for another container's pass on the same volume before
                          running without the lock (default 300; 0 = do not wait)
  FIX_PERMS_JOBS          worker processes for the walk (1..64; default: usable CPUs, at most 4;
                          1 = no fork)
  APP_HOME                private HOME of the app user (default /tmp/drive-home-<APP_UID>); its
                          parent must exist and be writable by the app user
Set for CMD: HOME, XDG_RUNTIME_DIR (= $HOME/run). Everything else is passed through unchanged; the
open-file soft limit raised for the walk is restored before exec.

Messages: one line each on stderr, prefixed "entrypoint:"; per path: "PATH: ownership pass: checked N,
changed N, hardlinks skipped N, other-fs skipped N, errors N, T s", plus one line listing the first
hard-linked files left alone and one listing the first errors, when there are any. Errors met during
the walk (an entry that cannot be changed, a read-only volume) are reported and the command is still
exec'd: a partly fixed volume is better served than no service. SIGTERM during the pass ends it (each
chown is atomic; the next start finishes the work).
Exit codes (only when CMD is not exec'd): 78 configuration error (bad variable, configured path a
symlink or not a directory, no command); 71 privilege drop failed; 127 command not found; 126 command
not executable; 70 unexpected internal error; 130 interrupted. ``--help`` prints this text and exits 0.
"""

import errno
import fcntl
import json
import os
import re
import stat
import sys
import time

PREFIX = "entrypoint:"
EX_OK = 0
EX_SOFTWARE = 70
EX_OSERR = 71
EX_CONFIG = 78
EX_NOEXEC = 126
EX_NOTFOUND = 127
EX_INTERRUPTED = 130

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
MAX_ID = 4294967294  # (uid_t)-1 means "unchanged" to chown: never a valid id
SHOW_NAMES = 5  # names listed in a hard-link or error report
NAME_LIMIT = 120  # characters shown of one such name (the end is kept)
FORK_ITEMS_PER_JOB = 16  # directories per worker before the walk is shared out


class ConfigError(Exception):
    """Bad configuration: one line, exit 78."""


class DropError(Exception):
    """Privilege drop failed or not verifiable: one line, exit 71."""


def say(msg):
    """Write one message line on stderr."""
    try:
        sys.stderr.write(f"{PREFIX} {msg}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def show(text, limit=None):
    """Printable single-line form of a path or name (control characters escaped, long ones cut)."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    if limit and len(text) > limit:
        text = "..." + text[-(limit - 3):]
    return text


# --------------------------------------------------------------------------- configuration


def parse_id(env, name, default):
    raw = env.get(name, "").strip()
    if raw == "":
        return default
    if not raw.isdigit() or not raw.isascii():
        raise ConfigError(f"{name}={show(raw)!s} is not a number (expected a numeric id)")
    if len(raw.lstrip("0")) > 10:  # int() refuses > 4300 digits on 3.11+: never reach it
        raise ConfigError(f"{name}={show(raw, 40)!s} is out of range (1..{MAX_ID})")
    value = int(raw)
    if value == 0:
        raise ConfigError(f"{name}=0 would keep root privileges; use an unprivileged id")
    if value > MAX_ID:
        raise ConfigError(f"{name}={raw} is out of range (1..{MAX_ID})")
    return value


def check_abs_path(name, raw):
    """Validate one absolute path; return it without duplicate or trailing slashes."""
    if not raw.startswith("/"):
        raise ConfigError(f"{name}: {show(raw)!s} is not an absolute path")
    if "\0" in raw or not raw.isprintable():
        raise ConfigError(f"{name}: {show(raw)!s} contains control characters")
    parts = [p for p in raw.split("/") if p]
    if not parts:
        raise ConfigError(f"{name}: refusing the root directory /")
    if any(p in (".", "..") for p in parts):
        raise ConfigError(f"{name}: {show(raw)!s} has a '.' or '..' component; give the real path")
    return "/" + "/".join(parts)


def parse_config(env):
    uid = parse_id(env, "APP_UID", 1001)
    gid = parse_id(env, "APP_GID", 127)
    paths = []
    for item in env.get("FIX_PERMS_PATHS", "").split(":"):
        item = item.strip()
        if not item:
            continue
        path = check_abs_path("FIX_PERMS_PATHS", item)
        if path not in paths:
            paths.append(path)
    raw_timeout = env.get("FIX_PERMS_LOCK_TIMEOUT", "").strip() or "300"
    try:
        lock_timeout = float(raw_timeout)
    except ValueError:
        lock_timeout = -1.0
    if not (0 <= lock_timeout <= 86400):  # also rejects nan
        raise ConfigError(
            f"FIX_PERMS_LOCK_TIMEOUT={show(raw_timeout)!s} is not a number of seconds (0..86400)"
        )
    raw_jobs = env.get("FIX_PERMS_JOBS", "").strip()
    if raw_jobs:
        short_number = raw_jobs.isascii() and raw_jobs.isdigit() and len(raw_jobs) <= 3
        if not (short_number and 1 <= int(raw_jobs) <= 64):
            raise ConfigError(f"FIX_PERMS_JOBS={show(raw_jobs)!s} is not a number of workers (1..64)")
        jobs = int(raw_jobs)
    else:
        jobs = min(usable_cpus(), 4)
    raw_home = env.get("APP_HOME", "").strip()
    home = check_abs_path("APP_HOME", raw_home) if raw_home else f"/tmp/drive-home-{uid}"  # noqa: S108
    return Config(uid, gid, paths, lock_timeout, jobs, home)


class Config:
    def __init__(self, uid, gid, paths, lock_timeout, jobs, home):
        self.uid = uid
        self.gid = gid
        self.paths = paths
        self.lock_timeout = lock_timeout
        self.jobs = jobs
        self.home = home


def usable_cpus():
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def parse_command(argv):
    args = list(argv)
    if args and args[0] == "--":
        args = args[1:]
    elif args and args[0] in ("-h", "--help"):
        return None
    elif args and args[0].startswith("-"):
        raise ConfigError(f"unknown option {show(args[0])!s} (usage: drive_entrypoint.py [--] CMD [ARGS...])")
    if not args or not args[0]:
        raise ConfigError("no command given (usage: drive_entrypoint.py [--] CMD [ARGS...])")
    return args


# --------------------------------------------------------------------------- opening paths safely


def _is_symlink_at(dir_fd, name):
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def open_config_dir(path, uid, gid):
    """Open (creating if missing) a configured directory without following any symlink.

    Returns (fd, created). Missing parents are created root-owned 0755, the last component owned by
    uid:gid. Raises ConfigError for a symlink or a non-directory anywhere in the path.
    """
    parts = path.strip("/").split("/")
    fd = os.open("/", DIR_FLAGS)
    created = False
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            where = "/" + "/".join(parts[: i + 1])
            made = False
            for _attempt in range(3):
                try:
                    nfd = os.open(part, DIR_FLAGS, dir_fd=fd)
                    break
                except FileNotFoundError:
                    try:
                        os.mkdir(part, 0o755, dir_fd=fd)
                        made = True
                    except FileExistsError:
                        pass  # created by someone else meanwhile: open it
                    except OSError as exc:
                        raise ConfigError(
                            f"FIX_PERMS_PATHS: cannot create {show(where)}: {exc.strerror}"
                        ) from None
                except OSError as exc:
                    if exc.errno in (errno.ENOTDIR, errno.ELOOP):
                        if _is_symlink_at(fd, part):
                            what = "is a symlink" if last else f"has a symlink component {show(where)}"
                            raise ConfigError(
                                f"FIX_PERMS_PATHS: {show(path)} {what}; refusing to follow it "
                                "(configure the real directory)"
                            ) from None
                        raise ConfigError(f"FIX_PERMS_PATHS: {show(where)} is not a directory") from None
                    raise ConfigError(f"FIX_PERMS_PATHS: cannot open {show(where)}: {exc.strerror}") from None
            else:
                raise ConfigError(f"FIX_PERMS_PATHS: {show(where)} keeps changing while being created")
            os.close(fd)
            fd = nfd
            if made:
                # mkdir's mode is filtered by the umask: set it, or a restrictive umask (077) would
                # leave root-owned 0700 parents the app user cannot traverse.
                os.fchmod(fd, 0o755)
            if made and last:
                try:
                    os.fchown(fd, uid, gid)
                    created = True
                except OSError:
                    pass  # e.g. an id not mapped in a user namespace: the pass retries and reports it
        return fd, created
    except BaseException:
        os.close(fd)
        raise


# --------------------------------------------------------------------------- mount points


def _unescape_mountinfo(field):
    return re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), field)


def mount_points_under(path):
    """Relative paths of the mount points strictly below `path` (from /proc/self/mountinfo)."""
    try:
        with open("/proc/self/mountinfo", "rb") as fh:
            data = fh.read()
    except OSError:
        return set()
    prefix = os.fsencode(path) + b"/"
    found = set()
    for line in data.splitlines():
        fields = line.split(b" ")
        if len(fields) < 5:
            continue
        mp = _unescape_mountinfo(fields[4])
        if mp.startswith(prefix) and len(mp) > len(prefix):
            found.add(os.fsdecode(mp[len(prefix):].rstrip(b"/")))
    return found


# --------------------------------------------------------------------------- the ownership pass


class Tally:
    """Counts of one pass (mergeable: forked workers send theirs to the parent as JSON)."""

    FIELDS = ("checked", "changed", "hardlinks", "other_fs", "errors")

    def __init__(self):
        self.checked = self.changed = self.hardlinks = self.other_fs = self.errors = 0
        self.hardlink_names = []
        self.error_notes = []

    def error(self, rel, exc):
        self.errors += 1
        if len(self.error_notes) < SHOW_NAMES:
            reason = exc.strerror or exc.__class__.__name__
            self.error_notes.append(f"{show(rel or '.', NAME_LIMIT)}: {reason}")

    def hardlink(self, rel):
        self.hardlinks += 1
        if len(self.hardlink_names) < SHOW_NAMES:
            self.hardlink_names.append(rel)

    def to_json(self):
        data = {k: getattr(self, k) for k in self.FIELDS}
        data["hardlink_names"] = self.hardlink_names
        data["error_notes"] = self.error_notes
        return json.dumps(data).encode("ascii")

    def merge_json(self, raw):
        data = json.loads(raw.decode("ascii"))
        for k in self.FIELDS:
            setattr(self, k, getattr(self, k) + int(data[k]))
        self.hardlink_names = (self.hardlink_names + list(data["hardlink_names"]))[:SHOW_NAMES]
        self.error_notes = (self.error_notes + list(data["error_notes"]))[:SHOW_NAMES]


class Walker:
    """lchown every entry under one directory whose owner or group differs from uid:gid.

    One fstatat per entry (relative to its directory's fd); only directories are opened
    (O_DIRECTORY|O_NOFOLLOW, then checked to be the inode that was lstat'ed); one file descriptor
    per level of depth. Work items are (parent_fd, parent_rel, name, inode) of directories to enter.
    """

    def __init__(self, dev, uid, gid, mounts, tally):
        self.dev = dev
        self.uid = uid
        self.gid = gid
        self.mounts = mounts
        self.tally = tally

    def scan(self, fd, rel):
        """Check (and fix) the entries of one directory; return [(name, inode)] of subdirectories."""
        tally = self.tally
        try:
            names = os.listdir(fd)
        except OSError as exc:
            tally.error(rel, exc)
            return []
        uid, gid, dev, mounts = self.uid, self.gid, self.dev, self.mounts
        lstat_at, chown_at, s_isdir = os.stat, os.chown, stat.S_ISDIR
        base = rel + "/" if rel else ""
        subs = []
        changed = 0
        for name in names:
            try:
                st = lstat_at(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed meanwhile
            except OSError as exc:
                tally.error(base + name, exc)
                continue
            if st.st_dev != dev:
                tally.other_fs += 1  # a mount point of another filesystem: not entered, not changed
                continue
            if mounts and (base + name) in mounts:
                # A (bind) mount point of the same filesystem: a directory, or a single file such
                # as a Swarm config bind-mounted from the engine's data directory. Never changed.
                tally.other_fs += 1
                continue
            if s_isdir(st.st_mode):
                subs.append((name, st.st_ino))
                if st.st_uid == uid and st.st_gid == gid:
                    continue
            elif st.st_uid == uid and st.st_gid == gid:
                continue
            elif st.st_nlink > 1:
                tally.hardlink(base + name)
                continue
            try:
                chown_at(name, uid, gid, dir_fd=fd, follow_symlinks=False)
                changed += 1
            except FileNotFoundError:
                continue
            except OSError as exc:
                tally.error(base + name, exc)
        tally.checked += len(names)
        tally.changed += changed
        return subs

    def enter(self, parent_fd, parent_rel, name, ino):
        """Open a subdirectory found by scan(); None when it vanished or was swapped meanwhile."""
        rel = parent_rel + "/" + name if parent_rel else name
        try:
            fd = os.open(name, DIR_FLAGS, dir_fd=parent_fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self.tally.error(rel, exc)  # replaced by a symlink or a file since its lstat
            return None
        st = os.fstat(fd)
        if st.st_ino != ino or st.st_dev != self.dev:
            os.close(fd)
            self.tally.error(rel, OSError(errno.EAGAIN, "replaced during the walk, not entered"))
            return None
        return fd, rel

    def walk(self, items):
        """Depth-first over the subtrees of the given work items."""
        for item in items:
            opened = self.enter(*item)
            if opened is None:
                continue
            stack = [(opened[0], opened[1], iter(self.scan(*opened)))]
            try:
                while stack:
                    fd, rel, pending = stack[-1]
                    nxt = next(pending, None)
                    if nxt is None:
                        stack.pop()
                        os.close(fd)
                        continue
                    child = self.enter(fd, rel, *nxt)
                    if child is not None:
                        stack.append((child[0], child[1], iter(self.scan(*child))))
            finally:
                for fd, _rel, _pending in stack:
                    os.close(fd)

    def walk_forked(self, items, jobs):
        """Share the work items round-robin among `jobs` forked workers; merge their counts.

        A worker that dies or reports nothing has its share redone here (the pass is idempotent).
        """
        kids = []
        here = []  # shares no worker could be started for (pids limit, fd limit): walked here
        for i in range(jobs):
            try:
                rfd, wfd = os.pipe()
            except OSError as exc:
                say(f"cannot start ownership worker {i + 1}/{jobs} ({exc.strerror}); walking its share here")
                here = list(range(i, jobs))
                break
            try:
                pid = os.fork()
            except OSError as exc:
                os.close(rfd)
                os.close(wfd)
                say(f"cannot start ownership worker {i + 1}/{jobs} ({exc.strerror}); walking its share here")
                here = list(range(i, jobs))
                break
            if pid == 0:  # worker: no output of its own, never returns
                code = 1
                try:
                    os.close(rfd)
                    self.tally = Tally()
                    self.walk(items[i::jobs])
                    data = self.tally.to_json()
                    while data:
                        data = data[os.write(wfd, data):]
                    code = 0
                finally:
                    os._exit(code)
            os.close(wfd)
            kids.append((pid, rfd, i))
        for i in here:  # while the workers that did start run
            self.walk(items[i::jobs])
        redo = []
        for pid, rfd, i in kids:
            chunks = []
            try:
                while True:
                    chunk = os.read(rfd, 65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
            finally:
                os.close(rfd)
            _pid, status = os.waitpid(pid, 0)
            try:
                if status != 0:
                    raise ValueError(f"wait status {status}")
                self.tally.merge_json(b"".join(chunks))
            except (ValueError, KeyError, TypeError) as exc:
                say(f"ownership worker {i + 1}/{jobs} failed ({exc}); redoing its share")
                redo.append(i)
        for i in redo:
            self.walk(items[i::jobs])


def fix_tree(root_fd, uid, gid, mounts, tally, jobs=1):
    """The ownership pass under root_fd (the directory itself included)."""
    root_st = os.fstat(root_fd)
    walker = Walker(root_st.st_dev, uid, gid, mounts, tally)
    tally.checked += 1
    if root_st.st_uid != uid or root_st.st_gid != gid:
        try:
            os.fchown(root_fd, uid, gid)
            tally.changed += 1
        except OSError as exc:
            tally.error("", exc)
    frontier = [(root_fd, "", name, ino) for name, ino in walker.scan(root_fd, "")]
    opened = []
    try:
        if jobs > 1:
            # Breadth-first until there are enough directories to share among the workers.
            while frontier and len(frontier) < FORK_ITEMS_PER_JOB * jobs:
                deeper = []
                for item in frontier:
                    child = walker.enter(*item)
                    if child is not None:
                        opened.append(child[0])
                        deeper.extend((child[0], child[1], n, i) for n, i in walker.scan(*child))
                frontier = deeper
        if jobs > 1 and len(frontier) > 1:
            walker.walk_forked(frontier, jobs)
        else:
            walker.walk(frontier)
    finally:
        for fd in opened:
            os.close(fd)


def take_lock(fd, path, timeout):
    """Exclusive flock on the directory fd; returns True when held."""
    deadline = time.monotonic() + timeout
    announced = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES, errno.EINTR):
                say(f"{show(path)}: cannot lock ({exc.strerror}); running the pass without the lock")
                return False
        if time.monotonic() >= deadline:
            say(f"{show(path)}: still locked by another container after {timeout:g}s; running the pass now")
            return False
        if not announced:
            say(f"{show(path)}: waiting for another container's ownership pass on the same volume")
            announced = True
        time.sleep(0.1)


def fix_path(path, cfg):
    """Create/lock/walk one configured path and report it in one or more lines."""
    uid, gid = cfg.uid, cfg.gid
    fd, created = open_config_dir(path, uid, gid)
    try:
        if created:
            say(f"{show(path)}: created, owned by {uid}:{gid}")
        take_lock(fd, path, cfg.lock_timeout)
        tally = Tally()
        start = time.monotonic()
        fix_tree(fd, uid, gid, mount_points_under(path), tally, cfg.jobs)
        elapsed = time.monotonic() - start
    finally:
        os.close(fd)  # releases the lock
    say(
        f"{show(path)}: ownership pass: checked {tally.checked}, changed {tally.changed}, "
        f"hardlinks skipped {tally.hardlinks}, other-fs skipped {tally.other_fs}, "
        f"errors {tally.errors}, {elapsed:.2f}s"
    )
    if tally.hardlinks:
        names = ", ".join(show(n, NAME_LIMIT) for n in tally.hardlink_names)
        more = ", ..." if tally.hardlinks > len(tally.hardlink_names) else ""
        say(
            f"{show(path)}: left {tally.hardlinks} multiply hard-linked file(s) with their owner "
            f"(a hard link can reach outside the volume; check and chown by hand): {names}{more}"
        )
    if tally.errors:
        more = ", ..." if tally.errors > len(tally.error_notes) else ""
        say(f"{show(path)}: {tally.errors} error(s): {'; '.join(tally.error_notes)}{more}")


# --------------------------------------------------------------------------- privileges, HOME


def drop_privileges(uid, gid):
    try:
        os.setgroups([gid])
        os.setgid(gid)
        os.setuid(uid)
    except OSError as exc:
        raise DropError(f"cannot drop privileges to {uid}:{gid}: {exc.strerror}") from None
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid) or os.getgroups() != [gid]:
        raise DropError(
            f"privilege drop incomplete: uids {os.getresuid()}, gids {os.getresgid()}, "
            f"groups {os.getgroups()}"
        )
    try:
        os.setuid(0)
    except PermissionError:
        pass
    else:
        raise DropError("privilege drop failed: setuid(0) still succeeds")
    # Bytes only from here on: decoding could need a codec module the app user cannot import.
    try:
        with open("/proc/self/status", "rb") as fh:
            status = fh.read()
    except OSError:
        return
    for key in (b"CapPrm", b"CapEff", b"CapAmb"):
        m = re.search(rb"^" + key + rb":\s*([0-9a-fA-F]+)$", status, re.M)
        if m and int(m.group(1), 16) != 0:
            raise DropError(f"privilege drop failed: {key.decode()} is {m.group(1).decode()} after setuid")


def _private_dir_at(parent_fd, name):
    """Create or reuse a 0700 directory of ours; return its fd or None if unusable."""
    try:
        os.mkdir(name, 0o700, dir_fd=parent_fd)
    except FileExistsError:
        pass
    fd = os.open(name, DIR_FLAGS, dir_fd=parent_fd)
    st = os.fstat(fd)
    if st.st_uid != os.geteuid():
        os.close(fd)
        return None
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.fchmod(fd, 0o700)
    return fd


def fresh_private_dir(parent):
    """A new 0700 directory with a random name in parent (like mkdtemp): (path, fd) or (None, None)."""
    try:
        pfd = os.open(parent, DIR_FLAGS)
    except OSError:
        return None, None
    try:
        for _attempt in range(20):
            name = "drive-home-" + os.urandom(6).hex()
            try:
                os.mkdir(name, 0o700, dir_fd=pfd)
            except FileExistsError:
                continue
            except OSError:
                return None, None
            try:
                return parent.rstrip("/") + "/" + name, os.open(name, DIR_FLAGS, dir_fd=pfd)
            except OSError:
                return None, None
        return None, None
    finally:
        os.close(pfd)


def make_private_home(wanted):
    """As the app user: HOME (0700) with HOME/run (0700). Returns (home, runtime_dir) or (None, None)."""
    parent, name = os.path.split(wanted)
    home = None
    try:
        pfd = os.open(parent, DIR_FLAGS)
        try:
            hfd = _private_dir_at(pfd, name)
        finally:
            os.close(pfd)
        if hfd is not None:
            home = wanted
        else:
            say(f"{show(wanted)} exists but is not a directory of uid {os.geteuid()}; using a fresh one")
    except OSError as exc:
        say(f"cannot use {show(wanted)} as HOME ({exc.strerror}); using a fresh one")
        hfd = None
    if hfd is None:
        home, hfd = fresh_private_dir("/tmp")  # noqa: S108
        if hfd is None:
            say("cannot create a private HOME in /tmp; HOME left unchanged")
            return None, None
    try:
        rfd = _private_dir_at(hfd, "run")
        if rfd is None:
            return home, None
        os.close(rfd)
        return home, home + "/run"
    except OSError:
        return home, None
    finally:
        os.close(hfd)


def writable_dir(path):
    return bool(path) and os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK)


# --------------------------------------------------------------------------- main


def find_program(name, env_path):
    """PATH lookup like a shell: (path, None) or (None, exit code) - 127 not found, 126 not executable."""
    if "/" in name:
        return (name, None) if os.path.lexists(name) else (None, EX_NOTFOUND)
    seen_file = False
    for d in (env_path or os.defpath).split(os.pathsep):
        candidate = os.path.join(d or ".", name)
        try:
            st = os.stat(candidate)
        except OSError:
            continue  # missing, or a PATH directory this user cannot search
        if stat.S_ISREG(st.st_mode):
            seen_file = True
            if os.access(candidate, os.X_OK):
                return candidate, None
    return None, (EX_NOEXEC if seen_file else EX_NOTFOUND)


def exec_command(cmd):
    path, code = find_program(cmd[0], os.environ.get("PATH"))
    if path is None:
        why = "not executable" if code == EX_NOEXEC else "command not found"
        say(f"cannot exec {show(cmd[0])}: {why}")
        return code
    try:
        os.execv(path, cmd)  # noqa: S606 - exec'ing the configured command is the point
    except FileNotFoundError as exc:
        say(f"cannot exec {show(cmd[0])}: {exc.strerror} (missing interpreter?)")
        return EX_NOTFOUND
    except OSError as exc:
        say(f"cannot exec {show(cmd[0])}: {exc.strerror}")
        return EX_NOEXEC
    return EX_SOFTWARE  # not reached


def raise_nofile():
    """Raise the open-file soft limit for deep trees; return the value to restore before exec."""
    try:
        import resource
    except ImportError:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            return resource, (soft, hard)
        except (OSError, ValueError):
            return None
    return None


def run(argv, env):
    cmd = parse_command(argv)
    if cmd is None:
        sys.stdout.write(__doc__ or "")
        return EX_OK
    cfg = parse_config(env)
    uid, gid, paths, home_wanted = cfg.uid, cfg.gid, cfg.paths, cfg.home

    if os.geteuid() == 0:
        restore = raise_nofile()
        for path in paths:
            fix_path(path, cfg)
        if restore is not None:
            resource, limits = restore
            resource.setrlimit(resource.RLIMIT_NOFILE, limits)
        drop_privileges(uid, gid)
        home, runtime = make_private_home(home_wanted)
        if home:
            os.environ["HOME"] = home
        if runtime:
            os.environ["XDG_RUNTIME_DIR"] = runtime
        else:
            os.environ.pop("XDG_RUNTIME_DIR", None)
        say(f"running as uid {uid} gid {gid} groups [{gid}], HOME={show(home or '?')}: exec {show(cmd[0])}")
    else:
        me = f"uid {os.geteuid()} gid {os.getegid()}"
        say(f"not root ({me}): ownership fix and privilege drop skipped")
        for path in paths:
            if not writable_dir(path):
                what = "does not exist" if not os.path.lexists(path) else "is not writable"
                say(f"{show(path)} {what} for {me}; the application may fail to write there")
        if not writable_dir(env.get("HOME", "")):
            home, _runtime = make_private_home(home_wanted)
            if home:
                say(f"HOME {show(env.get('HOME', '(unset)'))} is not writable; using {show(home)}")
                os.environ["HOME"] = home
        xdg = env.get("XDG_RUNTIME_DIR")
        if xdg and not writable_dir(xdg):
            os.environ.pop("XDG_RUNTIME_DIR", None)
            say(f"XDG_RUNTIME_DIR {show(xdg)} is not writable; unset")
    return exec_command(cmd)


def main(argv=None):
    try:
        return run(sys.argv[1:] if argv is None else argv, dict(os.environ))
    except ConfigError as exc:
        say(f"configuration error: {exc}")
        return EX_CONFIG
    except DropError as exc:
        say(str(exc))
        return EX_OSERR
    except KeyboardInterrupt:
        say("interrupted")
        return EX_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - last resort: one line, never a traceback
        say(f"internal error: {exc.__class__.__name__}: {exc}")
        return EX_SOFTWARE


if __name__ == "__main__":
    sys.exit(main())
