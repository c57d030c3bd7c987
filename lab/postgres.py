"""The lab's PostgreSQL: a cluster of its own in the lab directory, on loopback.

Tiled keeps two databases in it, as in its reference deployment: ``catalog`` (the index
of runs and their metadata) and ``tables`` (the event tables). The cluster is made the
first time (``initdb``), with a superuser ``ssb`` whose password lies in the lab's keys.
PostgreSQL refuses to run as root; run as root, the lab runs it as the system's
``postgres`` user, with the cluster in the lab directory if that user can reach it, else in
that user's home (Debian: /var/lib/postgresql/ssb-lab/...), where ``DIR/postgres`` points.
"""

from __future__ import annotations

import glob
import hashlib
import os
import pwd
import shutil
import subprocess
from pathlib import Path

USER = "ssb"
DATABASES = ("catalog", "tables")


class PostgresError(RuntimeError):
    pass


def binaries() -> Path:
    """The directory with ``postgres``, ``initdb`` and ``psql``: ``$SSB_PG_BIN``, the
    ``PATH``, or Debian's /usr/lib/postgresql/VERSION/bin (the newest)."""
    if os.environ.get("SSB_PG_BIN"):
        return Path(os.environ["SSB_PG_BIN"])
    found = shutil.which("postgres")
    if found:
        return Path(found).resolve().parent
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/postgres"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if versions:
        return Path(versions[-1]).parent
    raise PostgresError(
        "PostgreSQL is not installed: install its server (Debian/Ubuntu: apt-get install "
        "postgresql; conda: conda install -c conda-forge postgresql) or set SSB_PG_BIN to "
        "the directory holding `postgres` and `initdb`"
    )


def run_as() -> str | None:
    """The user PostgreSQL runs as: None (ourselves), or ``postgres`` when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresError(
            "PostgreSQL will not run as root and there is no `postgres` user to run it as: "
            "run `ssb lab` as an ordinary user, or create the user (useradd postgres)"
        ) from None
    return "postgres"


def _reachable(path: Path, user: str) -> bool:
    """Whether ``user`` may enter every directory down to ``path``."""
    entry = pwd.getpwnam(user)
    for parent in [*reversed(path.resolve().parents), path]:
        if not parent.exists():
            break
        info = os.stat(parent)
        if not (info.st_mode & 0o001 or (info.st_uid == entry.pw_uid and info.st_mode & 0o100)):
            return False
    return True


def data_directory(lab: Path) -> Path:
    """Where the lab's cluster lives: ``lab/postgres``, or, when PostgreSQL must run as
    ``postgres`` and that user cannot reach ``lab`` (root's home is closed), a directory
    of the lab's own in that user's home, linked from ``lab/postgres``."""
    inside = lab / "postgres"
    user = run_as()
    if user is None or inside.is_symlink() or _reachable(lab, user):
        return inside.resolve() if inside.is_symlink() else inside
    tag = hashlib.sha1(str(lab.resolve()).encode()).hexdigest()[:12]
    home = Path(pwd.getpwnam(user).pw_dir) / "ssb-lab" / tag
    home.parent.mkdir(parents=True, exist_ok=True)
    _hand_over(home.parent, user)
    inside.symlink_to(home)
    return home


def _hand_over(path: Path, user: str | None) -> None:
    """Give ``path`` to ``user``, who must be able to reach it."""
    if user is None:
        return
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    if not _reachable(path.parent, user):
        raise PostgresError(
            f"PostgreSQL runs as `{user}` (not as root), and `{user}` cannot reach "
            f"{path.parent}: choose a lab directory it can reach (`ssb lab up --dir "
            "/srv/ssb-lab`, say)"
        )


def initialise(data: Path, password: str) -> bool:
    """Make the cluster in ``data`` unless it is there; True if it was made now."""
    if (data / "PG_VERSION").exists():
        return False
    user = run_as()
    data.mkdir(parents=True, exist_ok=True)
    os.chmod(data, 0o700)
    _hand_over(data, user)
    pwfile = data.with_name(data.name + ".initial-password")  # initdb wants data empty
    pwfile.write_text(password)
    _hand_over(pwfile, user)
    try:
        done = subprocess.run(
            [
                str(binaries() / "initdb"),
                "-D",
                str(data),
                "-U",
                USER,
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "--encoding=UTF8",
                "--no-instructions",
            ],
            capture_output=True,
            text=True,
            user=user,
            timeout=120,
        )
    finally:
        pwfile.unlink(missing_ok=True)
    if done.returncode != 0:
        raise PostgresError(f"initdb failed in {data}:\n{done.stderr.strip()}")
    return True


def server_command(data: Path, port: int) -> list[str]:
    """The postmaster on loopback only, its socket in the data directory."""
    return [
        str(binaries() / "postgres"),
        "-D", str(data),
        "-p", str(port),
        "-c", "listen_addresses=127.0.0.1",
        "-c", f"unix_socket_directories={data}",
        "-c", "max_connections=200",  # every rig's writer and the overview hold a few
    ]  # fmt: skip


def _psql(port: int, password: str, sql: str, database: str = "postgres") -> str:
    done = subprocess.run(
        [
            str(binaries() / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            USER,
            "-d",
            database,
            "-tA",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "2"},
        timeout=30,
    )
    if done.returncode != 0:
        raise PostgresError(done.stderr.strip())
    return done.stdout.strip()


def ready(port: int, password: str) -> bool:
    try:
        return _psql(port, password, "SELECT 1") == "1"
    except PostgresError:
        return False


def ensure_databases(port: int, password: str) -> None:
    """Create Tiled's two databases if they are not there."""
    have = set(_psql(port, password, "SELECT datname FROM pg_database").split())
    for name in DATABASES:
        if name not in have:
            _psql(port, password, f"CREATE DATABASE {name}")


def uri(port: int, password: str, database: str, driver: str = "postgresql") -> str:
    return f"{driver}://{USER}:{password}@127.0.0.1:{port}/{database}"
