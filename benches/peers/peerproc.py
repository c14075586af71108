"""Shared by the peer benchmarks (benches/peers/run, consume, e2e): running
a client pinned with taskset and measuring its CPU from wait4, the CPU
shares other processes took meanwhile, and a one-broker Kafka lab cluster
(scripts/kafka-lab) on the server CPUs.
"""

import os
import random
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
KAFKA_LAB = os.path.join(ROOT, "scripts", "kafka-lab")
KAFKA_VERSION = "4.3.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class Failure(Exception):
    """A run went wrong: stop and say why."""


def say(msg):
    print(msg, file=sys.stderr, flush=True)


def parse_cpus(text):
    cpus = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            cpus.extend(range(int(lo), int(hi) + 1))
        else:
            cpus.append(int(part))
    return cpus


def cpu_list(cpus):
    return ",".join(str(c) for c in cpus)



# --------------------------------------------------------------------------
# CPU accounting

def cpu_ticks():
    """Per CPU: (user+nice ticks, busy ticks) from /proc/stat."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if not line.startswith("cpu") or line.startswith("cpu "):
                continue
            name, *vals = line.split()
            v = [int(x) for x in vals]
            idle = v[3] + v[4]
            out[int(name[3:])] = (v[0] + v[1], sum(v[:8]) - idle)
    return out


def process_ticks(pids):
    """utime + stime ticks of these processes (all their threads)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total


def share(before, after, cpus, index, wall):
    if not cpus or wall <= 0:
        return None
    ticks = sum(after[c][index] - before[c][index] for c in cpus if c in after and c in before)
    return ticks / CLK_TCK / (wall * len(cpus))


# --------------------------------------------------------------------------
# running a pinned client


def run_pinned(argv, cpus, log_base, timeout_s, server_pids=()):
    """Runs argv under `taskset -c cpus`, waits with wait4 (for its rusage),
    kills it after timeout_s. Returns (exit code, stdout, rusage, wall s,
    ticks before, ticks after); the ticks include the server processes'
    CPU ticks under the key "server"."""
    out_path, err_path = log_base + ".out", log_base + ".err"
    before = cpu_ticks()
    before["server"] = process_ticks(server_pids)
    t0 = time.monotonic()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(
            ["taskset", "-c", cpu_list(cpus)] + argv,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=ROOT,
        )
    timed_out = threading.Event()

    def kill():
        timed_out.set()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    timer = threading.Timer(timeout_s, kill)
    timer.start()
    try:
        _, status, rusage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - t0
    after = cpu_ticks()
    after["server"] = process_ticks(server_pids)
    with open(out_path, "rb") as f:
        stdout = f.read().decode("utf-8", "replace")
    if timed_out.is_set():
        raise Failure(f"{argv[0]} ran past {timeout_s:.0f} s and was killed (logs: {log_base}.*)")
    return proc.returncode, stdout, rusage, wall, before, after


def tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def client_cpu(rusage, wall, before, after, client_cpus, server_cpus):
    """A pinned run's CPU figures: the client's own (wait4), other
    processes' user share of the client CPUs, and the server CPUs' and the
    server process's busy shares."""
    other = share(before, after, client_cpus, 0, wall)
    if other is not None:
        # All user time on the client CPUs less the client's own.
        other = max(0.0, other - rusage.ru_utime / (wall * len(client_cpus)))
    return {
        "wall_s": wall,
        "cpu_user_s": rusage.ru_utime,
        "cpu_system_s": rusage.ru_stime,
        "client_cpus_other_user_share": other,
        "server_cpus_busy_share": share(before, after, server_cpus, 1, wall),
        "server_process_cpu_share": (after["server"] - before["server"]) / CLK_TCK
        / (wall * max(1, len(server_cpus))),
        "loadavg_after": open("/proc/loadavg").read().split()[0],
    }


def write_payloads(path, size):
    """1,000 values of printable random bytes ('!'..'~'), one a line: the
    payload file of librdkafka's runner and Kafka's ProducerPerformance."""
    rng = random.Random(1)
    with open(path, "w") as f:
        for _ in range(1000):
            f.write("".join(chr(rng.randint(33, 126)) for _ in range(size)) + "\n")


# --------------------------------------------------------------------------
# a one-broker Kafka


class Kafka:
    """A one-broker lab cluster (scripts/kafka-lab) on the server CPUs.
    `port` None lets kafka-lab choose (19092 for the name "default", the
    first free block from 19192 for others)."""

    def __init__(self, cpus, log_dir, name, port=None):
        self.cpus = cpus
        self.log_dir = log_dir
        self.name = name
        where = f" port {port}" if port else ""
        say(f"starting a one-broker Kafka {KAFKA_VERSION} on CPU {cpu_list(cpus)} (kafka-lab --name {name}{where})")
        extra = ["--port", str(port)] if port else []
        out = self.lab("start", "--name", name, *extra)
        self.bootstrap = out.strip().splitlines()[-1]

    def lab(self, *args):
        argv = [KAFKA_LAB, *args]
        if self.cpus:
            argv = ["taskset", "-c", cpu_list(self.cpus)] + argv
        r = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
        if r.returncode != 0:
            raise Failure(f"kafka-lab {' '.join(args)} failed:\n{r.stderr[-3000:]}")
        return r.stdout

    def pids(self):
        lab_dir = os.environ.get("DATASTORM_LAB_DIR", "/tmp/datastorm-lab")
        try:
            with open(os.path.join(lab_dir, self.name, "node-1", "pid")) as f:
                return [int(f.read().strip())]
        except (OSError, ValueError):
            return []

    def create_topic(self, topic, partitions):
        self.lab("create-topic", topic, "--name", self.name, "--partitions", str(partitions))
        # Reading the end offsets needs every partition's leader: once it
        # answers, no client meets NOT_LEADER_OR_FOLLOWER on its first sends.
        for _ in range(30):
            try:
                if self.end_offsets(topic) == 0:
                    return
                raise Failure(f"new topic {topic} is not empty")
            except Failure as e:
                if "not empty" in str(e):
                    raise
                time.sleep(1)
        raise Failure(f"topic {topic} has no leaders after 30 tries")

    def end_offsets(self, topic):
        out = self.lab("offsets", topic, "--name", self.name)
        return sum(int(line.split()[1]) for line in out.splitlines() if line.strip())

    def stop(self):
        subprocess.run([KAFKA_LAB, "stop", "--name", self.name], capture_output=True, cwd=ROOT)
        return {}
