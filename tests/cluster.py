"""Real Postgres clusters for integration tests, started as the `postgres`
OS user on loopback ports, in directories that user can reach."""
from __future__ import annotations

import os
import pathlib
import shutil
import signal
import subprocess
import tempfile
import time

import psycopg

# QUIVER_PG_BIN points the tests at another installation of the same major
# version (a developer's relocated copy beside the system one).
PG_BIN = pathlib.Path(os.environ.get("QUIVER_PG_BIN", "/usr/lib/postgresql/15/bin"))


def as_postgres(args: list[str], **kw) -> subprocess.CompletedProcess:
    if os.geteuid() == 0:
        args = ["sudo", "-u", "postgres", "--"] + args
    return subprocess.run(args, check=True, capture_output=True, text=True, cwd="/", **kw)


def children_of(pid: int) -> list[str]:
    """Child process ids of `pid`, read from /proc (no procps needed)."""
    out = []
    for d in pathlib.Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may contain spaces, so split after ')'
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            out.append(d.name)
    return out


class Cluster:
    def __init__(self, port: int, name: str = "c"):
        self.port = port
        self.root = pathlib.Path(tempfile.mkdtemp(prefix=f"quiver-{name}-", dir="/var/tmp"))
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self.data = self.root / "data"
        self.log = self.root / "server.log"

    def init(self, extra_conf: str = "") -> "Cluster":
        as_postgres([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                     "--locale=C.UTF-8", "--encoding=UTF8"])
        self.conf(f"""
listen_addresses = '127.0.0.1'
port = {self.port}
unix_socket_directories = '{self.root}'
shared_buffers = 128MB
fsync = on
wal_level = replica
max_wal_senders = 4
{extra_conf}
""")
        with open(self.data / "pg_hba.conf", "a") as f:
            f.write("host replication all 127.0.0.1/32 trust\n")
        return self

    def conf(self, text: str) -> None:
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(text)

    def start(self) -> "Cluster":
        as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "120", "start"])
        return self

    def stop(self, mode: str = "fast") -> None:
        subprocess.run((["sudo", "-u", "postgres", "--"] if os.geteuid() == 0 else [])
                       + [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"],
                       capture_output=True, cwd="/")

    def kill9(self) -> None:
        """Kills the postmaster and all its processes with SIGKILL, as a
        power failure would; the next start must run crash recovery."""
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        children = children_of(pid)
        os.kill(pid, signal.SIGKILL)
        for c in children:
            try:
                os.kill(int(c), signal.SIGKILL)
            except ProcessLookupError:
                pass
        for p in [pid] + [int(c) for c in children]:
            for _ in range(100):
                if not pathlib.Path(f"/proc/{p}").exists():
                    break
                time.sleep(0.05)

    def dsn(self, db: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={db}"

    def connect(self, db: str = "postgres", autocommit: bool = True) -> psycopg.Connection:
        return psycopg.connect(self.dsn(db), autocommit=autocommit)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
