#!/usr/bin/env python3
"""pgwarden benchmark suite (issue 4), driven by bench/run.sh.

Starts a throwaway PostgreSQL 15, two PgBouncer instances (plaintext both legs; TLS both
legs) and one pgwarden (a plaintext listener/backend pair and a TLS one), then runs every
scenario of the issue against direct, PgBouncer and pgwarden, alternating the targets
(A B C A B C ...). Prints a markdown table of medians with the targets checked and writes
it to bench/results/latest.md, with every raw number in bench/results/latest.csv.

Everything it starts runs under this process: children get a parent-death signal, and the
`finally` of main() stops them and removes the temporary directory, also on Ctrl-C,
SIGTERM and errors. Standard library only. Settings come from the environment (see
bench/README.md): RUNS, DURATION, WARMUP, QUICK, SCALE, BULK_MB, IDLE_SESSIONS, SCENARIOS,
PGWARDEN_BIN, PGWARDEN_SOURCE (what the binary was built from, for the report),
PGWARDEN_WORKERS, RATE, RESULTS_DIR, KEEP_TMP.
"""

from __future__ import annotations

import csv
import ctypes
import datetime as dt
import math
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PGBIN = Path("/usr/lib/postgresql/15/bin")
TARGETS = ("direct", "pgbouncer", "pgwarden")
# A second pgwarden with one worker thread, started for scenario 8's fixed-rate rows only.
ONE_WORKER = "pgwarden1"
LABEL = {"direct": "direct", "pgbouncer": "PgBouncer", "pgwarden": "pgwarden",
         ONE_WORKER: "pgwarden (workers = 1)"}
CLK_TCK = os.sysconf("SC_CLK_TCK")
COPY_ROW_BYTES = 8001  # repeat('x', 8000) plus the newline of COPY's text format


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    return int(raw) if raw.strip() else default


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    return float(raw) if raw.strip() else default


@dataclass
class Settings:
    quick: bool
    runs: int
    duration: float
    warmup: float
    scale: int
    bulk_bytes: int
    idle_sessions: int
    scenarios: set[str]
    pgwarden_bin: Path
    workers: int
    rate: int
    results_dir: Path
    keep_tmp: bool

    @staticmethod
    def from_env() -> "Settings":
        quick = os.environ.get("QUICK", "0") not in ("", "0")
        wanted = os.environ.get("SCENARIOS", "1,2,3,4,5,6,7,8")
        scenarios = {s.strip() for s in wanted.split(",") if s.strip()}
        if "8" in scenarios:  # scenario 8 is measured during scenarios 1 and 2
            scenarios |= {"1", "2"}
        binary = os.environ.get("PGWARDEN_BIN", "")
        if not binary:
            sys.exit("PGWARDEN_BIN is not set (bench/run.sh sets it after building)")
        return Settings(
            quick=quick,
            runs=env_int("RUNS", 1 if quick else 3),
            duration=env_float("DURATION", 3 if quick else 10),
            warmup=env_float("WARMUP", 1 if quick else 2),
            scale=env_int("SCALE", 10),
            bulk_bytes=env_int("BULK_MB", 128 if quick else 1024) * 1024 * 1024,
            idle_sessions=env_int("IDLE_SESSIONS", 200),
            scenarios=scenarios,
            pgwarden_bin=Path(binary).resolve(),
            workers=env_int("PGWARDEN_WORKERS", 0),
            rate=env_int("RATE", 10000),
            results_dir=Path(os.environ.get("RESULTS_DIR", ROOT / "bench" / "results")),
            keep_tmp=os.environ.get("KEEP_TMP", "0") not in ("", "0"),
        )


# ----------------------------------------------------------------------------------------
# Processes


_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _death_signal(sig: int):
    # Runs in the child after the uid switch (which would clear it): if this script dies
    # without cleaning up, even by SIGKILL, the child is told to stop.
    def set_it() -> None:
        _libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)

    return set_it


class Procs:
    """Every long-running child, stopped in reverse start order by stop_all()."""

    def __init__(self) -> None:
        self.items: list[tuple[str, subprocess.Popen, int]] = []
        self.postgres_user = os.getuid() == 0

    def spawn(self, name: str, args: list[str], *, log_path: Path, as_postgres: bool = False,
              env: dict[str, str] | None = None, stop_signal: int = signal.SIGTERM,
              cwd: Path | None = None) -> subprocess.Popen:
        kwargs: dict = {}
        if as_postgres and self.postgres_user:
            kwargs.update(user="postgres", group="postgres", extra_groups=[])
        out = open(log_path, "ab")
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                env=env if env is not None else os.environ.copy(),
                                cwd=cwd, preexec_fn=_death_signal(stop_signal), **kwargs)
        out.close()
        self.items.append((name, proc, stop_signal))
        return proc

    def stop(self, proc: subprocess.Popen, timeout: float = 15) -> None:
        for i, (name, p, sig) in enumerate(self.items):
            if p is proc:
                del self.items[i]
                _stop_one(name, p, sig, timeout)
                return

    def stop_all(self) -> None:
        while self.items:
            name, p, sig = self.items.pop()
            _stop_one(name, p, sig, 15)


def _stop_one(name: str, p: subprocess.Popen, sig: int, timeout: float) -> None:
    if p.poll() is not None:
        return
    try:
        p.send_signal(sig)
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        log(f"{name} did not stop after {timeout:.0f} s: SIGKILL")
        p.kill()
        p.wait()
    except ProcessLookupError:
        pass


def run(args: list[str], *, env: dict[str, str] | None = None, timeout: float = 600,
        as_postgres: bool = False, stdout=subprocess.PIPE, input_text: str | None = None,
        check: bool = True) -> subprocess.CompletedProcess:
    kwargs: dict = {}
    if as_postgres and os.getuid() == 0:
        kwargs.update(user="postgres", group="postgres", extra_groups=[])
    res = subprocess.run(args, env=env, timeout=timeout, stdout=stdout, stderr=subprocess.PIPE,
                         text=True, input=input_text,
                         preexec_fn=_death_signal(signal.SIGKILL), **kwargs)
    if check and res.returncode != 0:
        raise RuntimeError(f"{args[0]} exited {res.returncode}: {res.stderr.strip()[-2000:]}")
    return res


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} during start")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} is not listening on port {port} after {timeout:.0f} s")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of the whole process (all threads), from /proc/<pid>/stat."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # the process died; ensure_alive() reports it
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat


def established(port: int) -> int:
    """Accepted TCP connections on a local loopback port (server side sockets)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        local, state = parts[1], parts[3]
        if state == "01" and int(local.split(":")[1], 16) == port:
            count += 1
    return count


def chown_postgres(*paths: Path) -> None:
    if os.getuid() == 0:
        for p in paths:
            shutil.chown(p, "postgres", "postgres")


# ----------------------------------------------------------------------------------------
# The three targets


@dataclass
class Endpoint:
    port: int
    tls: bool


@dataclass
class Env:
    settings: Settings
    tmp: Path
    procs: Procs
    password: str = field(default_factory=lambda: secrets.token_hex(16))
    pg_port: int = 0
    pg_proc: subprocess.Popen | None = None
    pgb_ports: dict[str, int] = field(default_factory=dict)
    pgb_procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    # per pgwarden instance ("pgwarden", ONE_WORKER): listener ports by variant, process
    pw_ports: dict[str, dict[str, int]] = field(default_factory=dict)
    pw_procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def certs(self) -> Path:
        return self.tmp / "certs"

    @property
    def sock(self) -> Path:
        return self.tmp / "sock"

    def port(self, target: str, variant: str) -> int:
        if target == "direct":
            return self.pg_port
        if target == "pgbouncer":
            return self.pgb_ports[variant]
        return self.pw_ports[target][variant]

    def proxy_pid(self, target: str, variant: str) -> int | None:
        if target == "pgbouncer":
            return self.pgb_procs[variant].pid
        if target in self.pw_procs:
            return self.pw_procs[target].pid
        return None

    def client_env(self, target: str, variant: str) -> dict[str, str]:
        """libpq environment for a client of `target` over `variant` (plain or tls)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(PGHOST="127.0.0.1", PGPORT=str(self.port(target, variant)),
                   PGUSER="bench", PGDATABASE="bench", PGPASSWORD=self.password,
                   PGAPPNAME=f"bench-{target}-{variant}", PGCONNECT_TIMEOUT="30")
        if variant == "tls":
            # The clients verify the server they talk to, as a real deployment would.
            env.update(PGSSLMODE="verify-full", PGSSLROOTCERT=str(self.certs / "ca.crt"))
        else:
            env.update(PGSSLMODE="disable")
        return env

    # -- PostgreSQL ------------------------------------------------------------------------

    def start_postgres(self) -> None:
        s = self.settings
        data, pgdir = self.tmp / "pg", self.tmp / "pgfiles"
        for d in (data, pgdir, self.sock):
            d.mkdir()
        shutil.copy(self.certs / "server.crt", pgdir / "server.crt")
        shutil.copy(self.certs / "server.key", pgdir / "server.key")
        os.chmod(pgdir / "server.key", 0o600)
        chown_postgres(data, pgdir, self.sock, pgdir / "server.crt", pgdir / "server.key")
        run([str(PGBIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth-local=trust",
             "--auth-host=reject", "--no-sync", "-E", "UTF8", "--locale=C"], as_postgres=True)
        self.pg_port = free_port()
        with open(data / "postgresql.conf", "a") as f:
            f.write(f"""
listen_addresses = '127.0.0.1'
port = {self.pg_port}
unix_socket_directories = '{self.sock}'
# 200 idle sessions through a proxy, PgBouncer's pools, plus headroom.
max_connections = 800
shared_buffers = 256MB
ssl = on
ssl_cert_file = '{pgdir / "server.crt"}'
ssl_key_file = '{pgdir / "server.key"}'
password_encryption = 'scram-sha-256'
# Throwaway data: durability off (a select-only and COPY-out workload does not write).
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
""")
        (data / "pg_hba.conf").write_text(
            "local all all trust\n"
            "host  all bench 127.0.0.1/32 scram-sha-256\n")
        self.pg_proc = self.procs.spawn("postgres", [str(PGBIN / "postgres"), "-D", str(data)],
                                        log_path=self.tmp / "postgres.log", as_postgres=True,
                                        stop_signal=signal.SIGINT)
        deadline = time.monotonic() + 60
        while run([str(PGBIN / "pg_isready"), "-q", "-h", str(self.sock), "-p",
                   str(self.pg_port)], check=False).returncode != 0:
            if self.pg_proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("PostgreSQL did not start; see postgres.log")
            time.sleep(0.1)
        self.psql_admin(f"CREATE ROLE bench LOGIN PASSWORD '{self.password}'")
        self.psql_admin("CREATE DATABASE bench OWNER bench")
        log(f"PostgreSQL on 127.0.0.1:{self.pg_port}; pgbench -i -s {s.scale} ...")
        env = os.environ.copy()
        run([str(PGBIN / "pgbench"), "-i", "-q", "-s", str(s.scale), "-h", str(self.sock),
             "-p", str(self.pg_port), "-U", "bench", "bench"], env=env, timeout=3600)

    def psql_admin(self, sql: str, db: str = "postgres") -> str:
        res = run([str(PGBIN / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                   "-h", str(self.sock), "-p", str(self.pg_port), "-U", "postgres", "-d", db,
                   "-c", sql])
        return res.stdout.strip()

    # -- PgBouncer -------------------------------------------------------------------------

    def write_pgbouncer(self) -> None:
        verifier = self.psql_admin("SELECT rolpassword FROM pg_authid WHERE rolname = 'bench'")
        if not verifier.startswith("SCRAM-SHA-256$"):
            raise RuntimeError("the bench role has no SCRAM verifier")
        for variant in ("plain", "tls"):
            d = self.tmp / f"pgbouncer-{variant}"
            d.mkdir()
            # The same verifier as PostgreSQL's, so PgBouncer can log in upstream with the
            # keys the client's SCRAM exchange gives it (no plaintext password stored).
            (d / "userlist.txt").write_text(f'"bench" "{verifier}"\n')
            shutil.copy(self.certs / "server.crt", d / "server.crt")
            shutil.copy(self.certs / "server.key", d / "server.key")
            shutil.copy(self.certs / "ca.crt", d / "ca.crt")
            for f in ("userlist.txt", "server.key"):
                os.chmod(d / f, 0o600)
            self.pgb_ports[variant] = free_port()
            if variant == "tls":
                tls = f"""client_tls_sslmode = require
client_tls_cert_file = {d / "server.crt"}
client_tls_key_file = {d / "server.key"}
server_tls_sslmode = verify-full
server_tls_ca_file = {d / "ca.crt"}
"""
            else:
                tls = "client_tls_sslmode = disable\nserver_tls_sslmode = disable\n"
            (d / "pgbouncer.ini").write_text(f"""[databases]
bench = host=127.0.0.1 port={self.pg_port} dbname=bench

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.pgb_ports[variant]}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {d / "userlist.txt"}
pool_mode = session
max_client_conn = 1000
default_pool_size = 250
server_idle_timeout = 30
log_connections = 0
log_disconnections = 0
ignore_startup_parameters = extra_float_digits
{tls}""")
            chown_postgres(d, *d.iterdir())

    def start_pgbouncer(self, variant: str) -> None:
        d = self.tmp / f"pgbouncer-{variant}"
        proc = self.procs.spawn(f"pgbouncer-{variant}",
                                ["/usr/sbin/pgbouncer", str(d / "pgbouncer.ini")],
                                log_path=d / "pgbouncer.log", as_postgres=True, cwd=d)
        self.pgb_procs[variant] = proc
        wait_port(self.pgb_ports[variant], proc, f"PgBouncer ({variant})")

    def restart_pgbouncer(self, variant: str) -> None:
        self.procs.stop(self.pgb_procs[variant])
        self.start_pgbouncer(variant)

    # -- pgwarden --------------------------------------------------------------------------

    def write_pgwarden(self, name: str = "pgwarden", workers: int | None = None) -> None:
        d = self.tmp / name
        d.mkdir()
        users = run([str(self.settings.pgwarden_bin), "hash-password", "bench"],
                    input_text=self.password + "\n").stdout
        (d / "users.txt").write_text(users)
        os.chmod(d / "users.txt", 0o600)
        ports = {"plain": free_port(), "tls": free_port()}
        self.pw_ports[name] = ports
        c = self.certs
        (d / "pgwarden.toml").write_text(f"""# Written by bench/bench.py
[server]
workers = {self.settings.workers if workers is None else workers}
log_level = "warn"
shutdown_grace = "1s"

[[listener]]
name = "plain"
listen = "127.0.0.1:{ports["plain"]}"
backend = "plain"
tls = "disable"
auth = ["scram"]
users_file = "{d / "users.txt"}"

[[listener]]
name = "tls"
listen = "127.0.0.1:{ports["tls"]}"
backend = "tls"
tls = "require"
tls_cert = "{c / "server.crt"}"
tls_key = "{c / "server.key"}"
auth = ["scram"]
users_file = "{d / "users.txt"}"

[backend.plain]
address = "127.0.0.1:{self.pg_port}"
tls = "disable"
credentials = "static"
user = "bench"
password = "${{BENCH_DB_PASSWORD}}"

[backend.tls]
address = "127.0.0.1:{self.pg_port}"
tls = "verify-full"
tls_ca = "{c / "ca.crt"}"
credentials = "static"
user = "bench"
password = "${{BENCH_DB_PASSWORD}}"
""")
        env = dict(os.environ, BENCH_DB_PASSWORD=self.password)
        run([str(self.settings.pgwarden_bin), "check", "-c", str(d / "pgwarden.toml")], env=env)

    def start_pgwarden(self, name: str = "pgwarden") -> None:
        d = self.tmp / name
        env = dict(os.environ, BENCH_DB_PASSWORD=self.password)
        proc = self.procs.spawn(name, [str(self.settings.pgwarden_bin), "-c",
                                       str(d / "pgwarden.toml")],
                                log_path=d / "pgwarden.log", env=env,
                                stop_signal=signal.SIGTERM)
        self.pw_procs[name] = proc
        for variant, port in self.pw_ports[name].items():
            wait_port(port, proc, f"{name} ({variant} listener)")

    def restart_pgwarden(self, name: str = "pgwarden") -> None:
        if name in self.pw_procs:
            self.procs.stop(self.pw_procs[name])
        self.start_pgwarden(name)

    def restart(self, target: str, variant: str) -> None:
        if target == "pgbouncer":
            self.restart_pgbouncer(variant)
        elif target in self.pw_procs:
            self.restart_pgwarden(target)

    def ensure_alive(self) -> None:
        """A proxy that died is restarted, and the death is recorded in the results."""
        if self.pg_proc is None or self.pg_proc.poll() is not None:
            raise RuntimeError("PostgreSQL exited; see postgres.log")
        for variant, proc in list(self.pgb_procs.items()):
            if proc.poll() is not None:
                self.notes.append(f"PgBouncer ({variant}) exited with status {proc.returncode} "
                                  "during the run and was restarted")
                log(self.notes[-1])
                self.procs.stop(proc)
                self.start_pgbouncer(variant)
        for name, proc in list(self.pw_procs.items()):
            if proc.poll() is None:
                continue
            self.notes.append(f"{name} exited with status {proc.returncode} during "
                              "the run and was restarted (log tail below)")
            tail = (self.tmp / name / "pgwarden.log").read_text(errors="replace")
            self.notes.append("```\n" + "\n".join(tail.splitlines()[-15:]) + "\n```")
            log(self.notes[-2])
            self.restart_pgwarden(name)


# ----------------------------------------------------------------------------------------
# Scenarios


@dataclass
class Sample:
    scenario: str  # "1".."7", with a/b for variants: "6a", "7b"
    target: str
    run: int
    value: float | None  # None: the run failed
    transactions: int | None = None
    proxy_cpu_s: float | None = None
    seconds: float | None = None
    error: str = ""


@dataclass
class PgbenchScenario:
    key: str
    title: str
    variant: str
    args: list[str]
    metric: str  # "tps" or "latency_us"


PGBENCH_SCENARIOS = [
    PgbenchScenario("1", "`pgbench -S -M prepared -c 16 -j 2`, plaintext", "plain",
                    ["-S", "-M", "prepared", "-c", "16", "-j", "2"], "tps"),
    PgbenchScenario("2", "`pgbench -S -M simple -c 16 -j 2`, plaintext", "plain",
                    ["-S", "-M", "simple", "-c", "16", "-j", "2"], "tps"),
    PgbenchScenario("3", "`pgbench -S -M simple -c 1`, plaintext: average latency", "plain",
                    ["-S", "-M", "simple", "-c", "1", "-j", "1"], "latency_us"),
    PgbenchScenario("4", "`pgbench -S -C -c 8 -j 2`: connections/s, TLS + SCRAM", "tls",
                    ["-S", "-C", "-c", "8", "-j", "2"], "tps"),
    PgbenchScenario("5", "`pgbench -S -M prepared -c 16 -j 2`, TLS both legs", "tls",
                    ["-S", "-M", "prepared", "-c", "16", "-j", "2"], "tps"),
]


def pgbench(env: Env, target: str, variant: str, args: list[str], seconds: float) -> dict:
    pid = env.proxy_pid(target, variant)
    cpu0 = cpu_seconds(pid) if pid else None
    res = run([str(PGBIN / "pgbench"), "-n", "-T", f"{max(1, round(seconds))}", *args],
              env=env.client_env(target, variant), timeout=seconds + 300, check=False)
    cpu1 = cpu_seconds(pid) if pid else None
    out = res.stdout
    tps = re.search(r"^tps = ([0-9.]+)", out, re.M)
    lat = re.search(r"^latency average = ([0-9.]+) ms", out, re.M)
    txn = re.search(r"^number of transactions actually processed: (\d+)", out, re.M)
    failed = re.search(r"^number of failed transactions: (\d+)", out, re.M)
    if res.returncode != 0 or not (tps and lat and txn) or (failed and int(failed.group(1))):
        err = (res.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"pgbench exit {res.returncode}: {err}"}
    return {"tps": float(tps.group(1)), "latency_us": float(lat.group(1)) * 1000,
            "transactions": int(txn.group(1)),
            "proxy_cpu_s": (cpu1 - cpu0) if cpu0 is not None and cpu1 is not None else None}


def rate_scenario(rate: int) -> PgbenchScenario:
    """Scenario 1's clients held to a fixed total rate (`-R`), below every target's maximum:
    each proxy then does the same work, and its CPU per transaction compares the cost of
    that work without the differences in batching that saturation brings."""
    return PgbenchScenario("8r", f"scenario 1 at a fixed {rate:,} tps", "plain",
                           ["-S", "-M", "prepared", "-c", "16", "-j", "2", "-R", str(rate)],
                           "tps")


def scenario_pgbench(env: Env, sc: PgbenchScenario, samples: list[Sample],
                     targets: tuple[str, ...] = TARGETS) -> None:
    s = env.settings
    log(f"scenario {sc.key}: {sc.title}")
    if s.warmup > 0:
        for target in targets:
            env.ensure_alive()
            pgbench(env, target, sc.variant, sc.args, s.warmup)
    for i in range(1, s.runs + 1):
        for target in targets:  # alternate A B C A B C ...
            env.ensure_alive()
            r = pgbench(env, target, sc.variant, sc.args, s.duration)
            if "error" in r:
                samples.append(Sample(sc.key, target, i, None, error=r["error"]))
                log(f"  run {i} {target}: FAILED {r['error']}")
                continue
            samples.append(Sample(sc.key, target, i, r[sc.metric], r["transactions"],
                                  r["proxy_cpu_s"], s.duration))
            cpu = f", proxy CPU {r['proxy_cpu_s']:.2f} s" if r["proxy_cpu_s"] is not None else ""
            log(f"  run {i} {target}: {r[sc.metric]:.1f} {sc.metric}{cpu}")


def scenario_bulk(env: Env, samples: list[Sample]) -> None:
    s = env.settings
    rows = math.ceil(s.bulk_bytes / COPY_ROW_BYTES)
    nbytes = rows * COPY_ROW_BYTES
    sql = f"COPY (SELECT repeat('x', 8000) FROM generate_series(1, {rows})) TO STDOUT"
    for key, variant in (("6a", "plain"), ("6b", "tls")):
        log(f"scenario {key}: COPY TO STDOUT of {nbytes / 1e6:.0f} MB, {variant}")
        for i in range(1, s.runs + 1):
            for target in TARGETS:
                env.ensure_alive()
                t0 = time.monotonic()
                res = run([str(PGBIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql],
                          env=env.client_env(target, variant), stdout=subprocess.DEVNULL,
                          timeout=3600, check=False)
                elapsed = time.monotonic() - t0
                if res.returncode != 0:
                    err = (res.stderr.strip().splitlines() or ["no output"])[-1]
                    samples.append(Sample(key, target, i, None, error=f"psql: {err}"))
                    log(f"  run {i} {target}: FAILED {err}")
                    continue
                mbps = nbytes / elapsed / 1e6
                samples.append(Sample(key, target, i, mbps, seconds=elapsed))
                log(f"  run {i} {target}: {mbps:.0f} MB/s ({elapsed:.2f} s)")


def scenario_idle(env: Env, samples: list[Sample]) -> None:
    """RSS per idle session: fresh proxy, one warm-up login, VmRSS, N idle sessions, VmRSS.

    The sessions come from pgbench running one transaction per client: `SELECT 1`, then a
    long `\\sleep`. pgbench logs every client in (SCRAM, and TLS for the TLS variant) before
    the script starts; the SELECT makes each session a used one, as a pooled application
    connection is (PgBouncer only pairs a client with a server connection at its first
    query), and during the sleep it is silent.
    """
    s = env.settings
    n = s.idle_sessions
    hold = 600
    script = env.tmp / "idle.sql"
    script.write_text(f"SELECT 1;\n\\sleep {hold} s\n")
    for key, variant in (("7a", "plain"), ("7b", "tls")):
        log(f"scenario {key}: RSS per session with {n} idle sessions, {variant}")
        for i in range(1, s.runs + 1):
            for target in ("pgbouncer", "pgwarden"):
                env.ensure_alive()
                env.restart(target, variant)
                cenv = env.client_env(target, variant)
                run([str(PGBIN / "psql"), "-X", "-q", "-c", "SELECT 1"], env=cenv)
                # Tells these sessions apart from idle pooled connections of earlier runs.
                app = f"bench-idle-{key}-{target}-{i}"
                cenv["PGAPPNAME"] = app
                count_sql = ("SELECT count(*) FROM pg_stat_activity "
                             f"WHERE application_name = '{app}'")
                time.sleep(0.5)
                pid = env.proxy_pid(target, variant)
                port = env.port(target, variant)
                before = rss_kib(pid)
                proc = subprocess.Popen(
                    [str(PGBIN / "pgbench"), "-n", "-c", str(n), "-j", "2", "-t", "1",
                     "-f", str(script)], env=cenv, stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE, text=True, preexec_fn=_death_signal(signal.SIGKILL))
                try:
                    deadline = time.monotonic() + 120
                    while established(port) < n:
                        if proc.poll() is not None:
                            raise RuntimeError(f"pgbench exited: {proc.stderr.read()[-500:]}")
                        if time.monotonic() > deadline:
                            raise RuntimeError(f"only {established(port)} of {n} sessions")
                        time.sleep(0.1)
                    # Every session has run its SELECT (so PgBouncer has paired it with a
                    # server connection too); then nothing moves.
                    while int(env.psql_admin(count_sql)) < n:
                        if proc.poll() is not None:
                            raise RuntimeError(f"pgbench exited: {proc.stderr.read()[-500:]}")
                        if time.monotonic() > deadline:
                            raise RuntimeError(f"fewer than {n} upstream sessions")
                        time.sleep(0.2)
                    time.sleep(1)
                    if proc.poll() is not None:
                        raise RuntimeError(f"pgbench exited: {proc.stderr.read()[-500:]}")
                    after = rss_kib(pid)
                    per = (after - before) / n
                    upstream = env.psql_admin(count_sql)
                    samples.append(Sample(key, target, i, per))
                    log(f"  run {i} {target}: {before} KiB -> {after} KiB = {per:.1f} KiB/session"
                        f" ({established(port)} client sockets, {upstream} upstream sessions)")
                except (RuntimeError, OSError) as e:  # OSError: the proxy died
                    samples.append(Sample(key, target, i, None, error=str(e)))
                    log(f"  run {i} {target}: FAILED {e}")
                finally:
                    proc.terminate()
                    try:
                        proc.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
                # A PgBouncer keeps its 200 server connections pooled: a restart gives them
                # back to PostgreSQL before the next target opens its own.
                env.restart(target, variant)


# ----------------------------------------------------------------------------------------
# Report


@dataclass
class Row:
    key: str
    title: str
    unit: str
    targets: tuple[str, ...] = TARGETS
    source: str = ""  # scenario key of the samples; default `key`
    cpu: bool = False  # scenario 8: proxy CPU-s per 1000 transactions of `source`
    pgwarden: str = "pgwarden"  # the instance whose samples fill the pgwarden column

    def scenario(self) -> str:
        """The SCENARIOS entry that produces this row."""
        return "8" if self.cpu else (self.source or self.key).rstrip("ab")

    def instance(self, column: str) -> str:
        """The target whose samples fill `column` of this row."""
        return self.pgwarden if column == "pgwarden" else column


ROWS = [
    Row("1", PGBENCH_SCENARIOS[0].title, "tps"),
    Row("2", PGBENCH_SCENARIOS[1].title, "tps"),
    Row("3", PGBENCH_SCENARIOS[2].title, "µs"),
    Row("4", PGBENCH_SCENARIOS[3].title, "conn/s"),
    Row("5", PGBENCH_SCENARIOS[4].title, "tps"),
    Row("6a", "`COPY (SELECT …) TO STDOUT` of {bulk} MiB, plaintext", "MB/s"),
    Row("6b", "`COPY (SELECT …) TO STDOUT` of {bulk} MiB, TLS both legs", "MB/s"),
    Row("7a", "RSS per idle session ({idle} sessions), plaintext", "KiB",
        ("pgbouncer", "pgwarden")),
    Row("7b", "RSS per idle session ({idle} sessions), TLS", "KiB", ("pgbouncer", "pgwarden")),
    Row("8a", "proxy CPU per 1,000 transactions, scenario 1", "CPU-s",
        ("pgbouncer", "pgwarden"), source="1", cpu=True),
    Row("8b", "proxy CPU per 1,000 transactions, scenario 2", "CPU-s",
        ("pgbouncer", "pgwarden"), source="2", cpu=True),
    # Not targets of the issue: they show where scenario 8's difference comes from.
    Row("8c", "proxy CPU per 1,000 transactions, {rate_title}", "CPU-s",
        ("pgbouncer", "pgwarden"), source="8r", cpu=True),
    Row("8d", "the same with pgwarden `workers = 1`", "CPU-s",
        ("pgbouncer", "pgwarden"), source="8r", cpu=True, pgwarden=ONE_WORKER),
]


def values(samples: list[Sample], row: Row, target: str) -> list[float]:
    src = row.source or row.key
    target = row.instance(target)
    out = []
    for smp in samples:
        if smp.scenario != src or smp.target != target or smp.value is None:
            continue
        if row.cpu:
            if smp.proxy_cpu_s is None or not smp.transactions:
                continue
            out.append(smp.proxy_cpu_s / (smp.transactions / 1000))
        else:
            out.append(smp.value)
    return out


def fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "error"
    if unit == "CPU-s":
        return f"{v:.4f}"
    if unit in ("µs", "KiB"):
        return f"{v:.1f}"
    return f"{v:,.0f}"


def check(row: Row, med: dict[str, float | None]) -> tuple[str, str]:
    """(target text, PASS/FAIL with the figure the target is about)."""
    d, b, w = med.get("direct"), med.get("pgbouncer"), med.get("pgwarden")

    def ratio_ok(num, den, need):
        return num is not None and den is not None and den > 0 and num / den >= need

    k = row.key
    if k in ("1", "2"):
        need_b = 1.15 if k == "1" else 1.10
        ok = ratio_ok(w, b, need_b) and ratio_ok(w, d, 0.85)
        return f"≥ {need_b:.2f}× PgBouncer, ≥ 0.85× direct", "PASS" if ok else "FAIL"
    if k == "3":
        if w is None or d is None:
            return "≤ 30 µs over direct", "n/a"
        added = w - d
        extra = f" (PgBouncer +{b - d:.0f} µs)" if b is not None else ""
        return "≤ 30 µs over direct", f"{'PASS' if added <= 30 else 'FAIL'}: +{added:.0f} µs{extra}"
    if k in ("4", "5", "6b"):
        return "≥ 0.70× direct", "PASS" if ratio_ok(w, d, 0.7) else "FAIL"
    if k == "6a":
        return "≥ 0.90× direct", "PASS" if ratio_ok(w, d, 0.9) else "FAIL"
    if k in ("7a", "7b"):
        limit = 64 if k == "7a" else 160
        return f"≤ {limit} KiB", "PASS" if w is not None and w <= limit else "FAIL"
    if k in ("8a", "8b"):
        ok = w is not None and b is not None and w <= b
        return "pgwarden ≤ PgBouncer", "PASS" if ok else "FAIL"
    if k in ("8c", "8d"):
        if w is None or b is None:
            return "(diagnostic)", "n/a"
        return "(diagnostic)", "pgwarden ≤ PgBouncer" if w <= b else "pgwarden > PgBouncer"
    return "", ""


def machine_facts() -> dict[str, str]:
    def first(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30,
                                  cwd=ROOT).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return "unknown"

    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return {
        "cpu": cpu,
        "nproc": str(os.cpu_count()),
        "mem": f"{int(mem) / 1024 / 1024:.0f} GiB",
        "kernel": platform.release(),
        "postgres": first([str(PGBIN / "postgres"), "--version"]),
        "pgbouncer": first(["/usr/sbin/pgbouncer", "--version"]),
        "openssl": first(["openssl", "version"]),
    }


def report(env: Env, samples: list[Sample], facts: dict[str, str], load_start: str,
           load_end: str, started: dt.datetime, elapsed: float) -> str:
    s = env.settings
    pw_version = run([str(s.pgwarden_bin), "--version"], check=False).stdout.strip()
    build = os.environ.get("PGWARDEN_SOURCE") or f"binary {s.pgwarden_bin}"
    rows = [r for r in ROWS if r.scenario() in s.scenarios]
    lines = [
        "# pgwarden benchmark results",
        "",
        f"- run: {started:%Y-%m-%d %H:%M} UTC, {elapsed / 60:.1f} min; "
        f"RUNS={s.runs}, DURATION={s.duration:g} s per pgbench run (after a "
        f"{s.warmup:g} s warm-up per target), SCALE={s.scale}, "
        f"bulk {s.bulk_bytes / 2**20:.0f} MiB, {s.idle_sessions} idle sessions"
        + (", QUICK=1 (smoke test, not a measurement)" if s.quick else ""),
        f"- machine: {facts['cpu']}, nproc {facts['nproc']}, {facts['mem']} RAM, Linux "
        f"{facts['kernel']}; load average at start {load_start}, at end {load_end} (shared "
        "machine: other jobs ran during the measurement, so figures are noisy)",
        f"- software: {pw_version} ({build}, workers="
        f"{s.workers or 'one per core'}); {facts['postgres']}; {facts['pgbouncer']}; "
        f"{facts['openssl']}",
        "",
        "Medians over the runs; targets were run alternately (direct, PgBouncer, pgwarden, "
        "direct, …). Ratios are pgwarden's median over the other's; for latency, memory and "
        "CPU lower is better.",
        "",
        "| # | scenario | unit | direct | PgBouncer | pgwarden | pgwarden/direct | "
        "pgwarden/PgBouncer | target | result |",
        "|---|---|---|--:|--:|--:|--:|--:|---|---|",
    ]
    csv_medians = {}
    for row in rows:
        med: dict[str, float | None] = {}
        cells = []
        for t in TARGETS:
            if t not in row.targets:
                cells.append("—")
                continue
            vals = values(samples, row, t)
            med[t] = statistics.median(vals) if vals else None
            cells.append(fmt(med[t], row.unit))
        csv_medians[row.key] = med

        def ratio(other: str) -> str:
            a, b = med.get("pgwarden"), med.get(other)
            if other not in row.targets or a is None or b is None or b == 0:
                return "—"
            return f"{a / b:.2f}"

        target, result = check(row, med)
        title = row.title.format(bulk=s.bulk_bytes // 2**20, idle=s.idle_sessions,
                                 rate_title=rate_scenario(s.rate).title)
        lines.append(f"| {row.key} | {title} | {row.unit} | {' | '.join(cells)} | "
                     f"{ratio('direct')} | {ratio('pgbouncer')} | {target} | {result} |")
    lines += ["", "Every run (same units; `error` = the run failed):", ""]
    lines += ["| # | target | runs |", "|---|---|---|"]
    for row in rows:
        for t in map(row.instance, row.targets):
            vals = []
            src = row.source or row.key
            for smp in samples:
                if smp.scenario == src and smp.target == t:
                    if smp.value is None:
                        vals.append("error")
                    elif row.cpu:
                        if smp.proxy_cpu_s is not None and smp.transactions:
                            vals.append(fmt(smp.proxy_cpu_s / (smp.transactions / 1000),
                                            row.unit))
                    else:
                        vals.append(fmt(smp.value, row.unit))
            lines.append(f"| {row.key} | {LABEL[t]} | {', '.join(vals)} |")
    errors = sorted({f"{smp.scenario} {smp.target}: {smp.error}" for smp in samples
                     if smp.error})
    if errors or env.notes:
        lines += ["", "Problems during the run:", ""]
        lines += [f"- {e}" for e in errors]
        lines += env.notes
    return "\n".join(lines) + "\n"


def write_csv(path: Path, samples: list[Sample]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["scenario", "target", "run", "value", "unit", "transactions",
                    "proxy_cpu_s", "seconds", "error"])
        units = {r.key: r.unit for r in ROWS} | {"8r": "tps"}
        for smp in samples:
            w.writerow([smp.scenario, smp.target, smp.run,
                        "" if smp.value is None else f"{smp.value:.6g}",
                        units.get(smp.scenario, ""),
                        "" if smp.transactions is None else smp.transactions,
                        "" if smp.proxy_cpu_s is None else f"{smp.proxy_cpu_s:.2f}",
                        "" if smp.seconds is None else f"{smp.seconds:.3f}", smp.error])


# ----------------------------------------------------------------------------------------


def _terminate(signum, _frame):
    raise SystemExit(128 + signum)


def main() -> int:
    settings = Settings.from_env()
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 200+ sessions per proxy

    started = dt.datetime.now(dt.timezone.utc)
    t_start = time.monotonic()
    load_start = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    facts = machine_facts()
    log(f"nproc {facts['nproc']}, load average {load_start}; settings: RUNS={settings.runs} "
        f"DURATION={settings.duration:g} QUICK={int(settings.quick)} SCALE={settings.scale} "
        f"scenarios {','.join(sorted(settings.scenarios))}")

    tmp = Path(tempfile.mkdtemp(prefix="pgwarden-bench."))
    os.chmod(tmp, 0o755)  # the postgres user must reach its files inside
    procs = Procs()
    env = Env(settings, tmp, procs)
    samples: list[Sample] = []
    try:
        run([str(ROOT / "scripts" / "make-certs.sh"), str(env.certs)])
        env.start_postgres()
        env.write_pgbouncer()
        env.start_pgbouncer("plain")
        env.start_pgbouncer("tls")
        env.write_pgwarden()
        env.start_pgwarden()
        if "8" in settings.scenarios:
            env.write_pgwarden(ONE_WORKER, workers=1)
            env.start_pgwarden(ONE_WORKER)
        log(f"PgBouncer on {env.pgb_ports}, pgwarden on {env.pw_ports}")
        for sc in PGBENCH_SCENARIOS:
            if sc.key in settings.scenarios:
                scenario_pgbench(env, sc, samples)
        if "8" in settings.scenarios:
            scenario_pgbench(env, rate_scenario(settings.rate), samples,
                             ("pgbouncer", "pgwarden", ONE_WORKER))
        if "6" in settings.scenarios:
            scenario_bulk(env, samples)
        if "7" in settings.scenarios:
            scenario_idle(env, samples)
        env.ensure_alive()

        load_end = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        text = report(env, samples, facts, load_start, load_end, started,
                      time.monotonic() - t_start)
        settings.results_dir.mkdir(parents=True, exist_ok=True)
        (settings.results_dir / "latest.md").write_text(text)
        write_csv(settings.results_dir / "latest.csv", samples)
        print(text)
        log(f"written {settings.results_dir / 'latest.md'} and latest.csv")
        return 0
    finally:
        procs.stop_all()
        if settings.keep_tmp:
            log(f"KEEP_TMP: logs and configuration kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
