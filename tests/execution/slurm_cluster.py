"""A real single-node Slurm cluster on localhost, for the Slurm executor's tests and benchmark.

Debian's slurm-wlm and munge (`apt-get install slurm-wlm munge`), run as root: munged, slurmctld and
slurmd with their configuration, keys, state and logs in one temporary folder, on free ports, the
node's CPUs set by the configuration (`SlurmdParameters=config_overrides`) rather than the machine.
Commands find the cluster through `SLURM_CONF` (in `env`). `stop()` cancels what is left and ends the
three daemons by the pids they wrote.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
NODE = "localnode"


class ClusterError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalSlurm:
    def __init__(self, cpus: int = 4, memory_mb: int = 8000):
        self.cpus, self.memory_mb = cpus, memory_mb
        self.root: Path | None = None
        self.pids: dict[str, int] = {}

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        return dict(os.environ, SLURM_CONF=str(self.conf))

    def run(self, *cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        done = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise ClusterError(f"{' '.join(cmd)}: exit {done.returncode}\n{done.stdout}{done.stderr}")
        return done

    def start(self, timeout: float = 60) -> LocalSlurm:
        missing = [d for d in (*DAEMONS, "sinfo", "sbatch") if shutil.which(d) is None
                   and not Path("/usr/sbin", d).exists()]
        if missing:
            raise ClusterError(f"{', '.join(missing)} not found: install Debian's slurm-wlm and munge "
                               "(apt-get install slurm-wlm munge), as .ci/run does")
        if os.geteuid() != 0:
            raise ClusterError("the local Slurm cluster needs root (slurmd runs jobs as their users)")
        self.root = Path(tempfile.mkdtemp(prefix="altui-slurm-"))  # short: munge's socket path is limited
        self.root.chmod(0o755)
        for sub in ("munge", "state", "spool", "log"):
            (self.root / sub).mkdir(mode=0o755)
        try:
            self.start_munge()
            self.write_conf()
            self.run("/usr/sbin/slurmctld", "-f", str(self.conf))
            self.run("/usr/sbin/slurmd", "-f", str(self.conf), "-N", NODE)
            self.pids["slurmctld"] = self.wait_pid("slurmctld.pid")
            self.pids["slurmd"] = self.wait_pid("slurmd.pid")
            deadline = time.monotonic() + timeout
            while "idle" not in self.run("sinfo", "--noheader", "--format=%T", check=False).stdout:
                if time.monotonic() > deadline:
                    raise ClusterError(f"the node is not idle after {timeout:.0f} s\n{self.logs()}")
                time.sleep(0.2)
        except BaseException:
            self.stop()
            raise
        return self

    def start_munge(self) -> None:
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        m = self.root / "munge"
        subprocess.run(["/usr/sbin/munged", "--force", f"--key-file={key}", f"--socket={m / 'munge.sock'}",
                        f"--pid-file={m / 'munged.pid'}", f"--log-file={m / 'munged.log'}",
                        f"--seed-file={m / 'munged.seed'}"], check=True, capture_output=True, timeout=30)
        self.pids["munged"] = self.wait_pid("munge/munged.pid")

    def write_conf(self) -> None:
        r = self.root
        self.conf.write_text(f"""\
ClusterName=altuitest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={r}/munge/munge.sock
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
PlugStackConfig={r}/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=5
MinJobAge=3600
NodeName={NODE} NodeHostname=localhost NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.memory_mb} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
        (r / "plugstack.conf").write_text("")

    def wait_pid(self, name: str, timeout: float = 30) -> int:
        path = self.root / name
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = path.read_text().strip() if path.exists() else ""
            if text.isdigit():
                return int(text)
            time.sleep(0.05)
        raise ClusterError(f"{path} was not written in {timeout:.0f} s\n{self.logs()}")

    def logs(self) -> str:
        parts = []
        for path in sorted([*(self.root / "log").glob("*.log"), self.root / "munge" / "munged.log"]):
            if path.exists():
                parts.append(f"== {path.name}\n" + "\n".join(path.read_text().splitlines()[-15:]))
        return "\n".join(parts)

    def jobs(self) -> list[dict[str, str]]:
        """Every job squeue lists: id, name, state, node."""
        out = self.run("squeue", "--noheader", "--format=%i|%j|%T|%N").stdout
        return [dict(zip(("id", "name", "state", "node"), line.split("|"), strict=True)) for line in out.splitlines()]

    def cancel_all(self, timeout: float = 60) -> None:
        """scancel every job and wait until squeue lists none."""
        self.run("scancel", "--user=root", check=False)
        deadline = time.monotonic() + timeout
        while self.jobs():
            if time.monotonic() > deadline:
                raise ClusterError(f"jobs still listed after scancel: {self.jobs()}")
            time.sleep(0.3)

    def stop(self) -> None:
        """Cancel what is left, end the daemons by pid (slurmd first), remove the folder."""
        if self.pids.get("slurmctld"):
            try:
                self.cancel_all(timeout=30)
            except (ClusterError, subprocess.SubprocessError):
                pass
        for name in ("slurmd", "slurmctld", "munged"):
            pid = self.pids.pop(name, None)
            if pid:
                end(pid)
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None


def end(pid: int, grace: float = 10) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; returns once the process is gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        if Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            return  # a zombie: gone but for its parent's wait (daemons are not our children)
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
