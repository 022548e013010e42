"""A real single-node SLURM cluster for the tests of ``cli extract --cluster slurm``.

Debian's ``slurmctld``, ``slurmd``, ``slurm-client`` and ``munge``, installed with apt when
missing (skipped, with the reason, where the tests are not root or there is no apt). Nothing
of the machine's own configuration is used or changed: the fixture writes a munge key and a
``slurm.conf`` into a temporary folder, starts ``munged`` (as user munge, on its own socket),
``slurmctld`` and ``slurmd`` on free ports, points ``SLURM_CONF`` at the file for the session,
and at the end cancels the jobs left and stops the daemons by their process ids.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
PARTITION = "debug"
START_S = 30.0
"""How long the node may take to be idle (about 1.5 s measured)."""


@dataclass(frozen=True)
class Slurm:
    """The running test cluster.

    Attributes:
        conf: its ``slurm.conf`` (also in ``SLURM_CONF`` for the session).
        partition: its one partition.
        cores: the node's cores.
        folder: where the key, config, state and daemon logs are.
    """

    conf: Path
    partition: str
    cores: int
    folder: Path

    def run(self, *args: str) -> str:
        """A SLURM client command's stdout (it fails the test when the command fails)."""
        res = subprocess.run(list(args), capture_output=True, text=True, timeout=30,
                             env={**os.environ, "SLURM_CONF": str(self.conf)}, check=False)
        assert res.returncode == 0, f"{' '.join(args)}: {res.stderr}"
        return res.stdout

    def jobs(self) -> dict[str, str]:
        """job id -> state of the jobs SLURM lists (ended ones for a few minutes)."""
        out = self.run("squeue", "-h", "-t", "all", "-o", "%i %T")
        return dict(line.split() for line in out.splitlines() if line.strip())

    def running(self) -> list[str]:
        return [job for job, state in self.jobs().items() if state == "RUNNING"]


def _install() -> None:
    if all(shutil.which(tool) for tool in ("slurmctld", "slurmd", "sbatch", "munged")):
        return
    if os.geteuid() != 0:
        pytest.skip("SLURM is not installed and the tests are not root (apt-get install "
                    + " ".join(PACKAGES) + ")")
    if not shutil.which("apt-get"):
        pytest.skip("SLURM is not installed and there is no apt-get to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]):
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600,
                             check=False)
        if res.returncode != 0:
            pytest.skip(f"{' '.join(cmd[:2])} failed: {res.stderr.strip()[-300:]}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _node_memory_mb() -> int:
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, timeout=30,
                         check=True).stdout
    (field,) = [f for f in out.split() if f.startswith("RealMemory=")]
    return int(int(field.split("=")[1]) * 0.9)  # a little under what slurmd sees


def _config(folder: Path, host: str, cores: int, memory_mb: int, socket_path: Path) -> str:
    return "\n".join([
        "ClusterName=conclugen-test",
        f"SlurmctldHost={host}(127.0.0.1)",
        f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}",
        "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={socket_path}",
        "SlurmUser=root", "SlurmdUser=root",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
        "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core_Memory",
        "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
        "MpiDefault=none", "ReturnToService=2", "SchedulerType=sched/backfill",
        "SlurmctldTimeout=30", "SlurmdTimeout=30", "InactiveLimit=0", "KillWait=5",
        "MinJobAge=300",
        f"StateSaveLocation={folder / 'state'}", f"SlurmdSpoolDir={folder / 'spool'}",
        f"SlurmctldPidFile={folder / 'slurmctld.pid'}",
        f"SlurmdPidFile={folder / 'slurmd.pid'}",
        f"SlurmctldLogFile={folder / 'slurmctld.log'}",
        f"SlurmdLogFile={folder / 'slurmd.log'}",
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs={cores} RealMemory={memory_mb} State=UNKNOWN",
        f"PartitionName={PARTITION} Nodes={host} Default=YES MaxTime=INFINITE State=UP",
        ""])


def _start_munge(folder: Path) -> tuple[subprocess.Popen, Path]:
    """munged as user munge with its own key and socket in ``folder`` (owned by munge)."""
    munge = pwd.getpwnam("munge")
    key, socket_path = folder / "munge.key", folder / "munge.socket"
    key.write_bytes(os.urandom(1024))  # what mungekey (or create-munge-key) would write
    for path in (folder, key):
        os.chown(path, munge.pw_uid, munge.pw_gid)
    os.chmod(key, 0o600)
    proc = subprocess.Popen(
        ["munged", "--foreground", f"--key-file={key}", f"--socket={socket_path}",
         f"--pid-file={folder / 'munged.pid'}", f"--log-file={folder / 'munged.log'}",
         f"--seed-file={folder / 'munged.seed'}"],
        user=munge.pw_uid, group=munge.pw_gid, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    _wait(lambda: socket_path.exists(), "munged's socket", folder / "munged.log")
    return proc, socket_path


def _wait(ready: object, what: str, log: Path, timeout_s: float = START_S) -> None:
    assert callable(ready)
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            tail = log.read_text()[-2000:] if log.exists() else "(no log)"
            pytest.fail(f"{what} not ready in {timeout_s:.0f} s; {log}:\n{tail}")
        time.sleep(0.2)


def _node_idle(conf: Path) -> bool:
    res = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True,
                         timeout=10, env={**os.environ, "SLURM_CONF": str(conf)}, check=False)
    return res.returncode == 0 and res.stdout.strip() == "idle"


def _stop(procs: list[subprocess.Popen]) -> None:
    """Each daemon by its process id: SIGTERM, then SIGKILL after 10 s."""
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in reversed(procs):
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _cancel_all(slurm: Slurm) -> None:
    """The jobs a test left (its driver normally cancels them), gone before slurmd stops."""
    live = [job for job, state in slurm.jobs().items()
            if state in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING")]
    if live:
        slurm.run("scancel", *live)
    deadline = time.monotonic() + 30
    while live and time.monotonic() < deadline:
        live = [job for job in live if slurm.jobs().get(job) in ("PENDING", "RUNNING",
                                                                  "CONFIGURING", "COMPLETING")]
        time.sleep(0.5)


@pytest.fixture(scope="session")
def slurm() -> Iterator[Slurm]:
    """A running single-node SLURM cluster, ``SLURM_CONF`` set for the session."""
    if os.geteuid() != 0:
        pytest.skip("the SLURM daemons of the test cluster run as root")
    _install()
    # munged must reach its folder as user munge: not under pytest's root-only tmp folders.
    folder = Path(tempfile.mkdtemp(prefix="conclugen-slurm-"))
    os.chmod(folder, 0o755)
    (folder / "munge").mkdir()
    for sub in ("state", "spool"):
        (folder / sub).mkdir()
    procs: list[subprocess.Popen] = []
    saved = os.environ.get("SLURM_CONF")
    try:
        munged, socket_path = _start_munge(folder / "munge")
        procs.append(munged)
        host, cores = socket.gethostname().split(".")[0], os.cpu_count() or 1
        conf = folder / "slurm.conf"
        conf.write_text(_config(folder, host, cores, _node_memory_mb(), socket_path))
        procs.append(subprocess.Popen(["slurmctld", "-D", "-i", "-f", str(conf)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        procs.append(subprocess.Popen(["slurmd", "-D", "-f", str(conf), "-N", host],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        _wait(lambda: _node_idle(conf), "the SLURM node", folder / "slurmd.log")
        os.environ["SLURM_CONF"] = str(conf)
        cluster = Slurm(conf, PARTITION, cores, folder)
        try:
            yield cluster
        finally:
            _cancel_all(cluster)
    finally:
        _stop(procs)
        if saved is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = saved
        shutil.rmtree(folder, ignore_errors=True)
