"""Shared by benches/peers/run and benches/peers/tables: the results file's
shape, medians, and the Markdown tables and SVG plot drawn from it.

A results file (schema datastorm.peers/1) holds every run's raw figures;
everything shown is computed from `runs` here, so a table never holds a
figure that no run produced.
"""

import os
import statistics
import subprocess

SCHEMA = "datastorm.peers/1"
# benches/peers/consume and benches/peers/e2e: their own run shapes.
CONSUME_SCHEMA = "datastorm.peers-consume/1"
E2E_SCHEMA = "datastorm.peers-e2e/1"

# Display order and names of the clients.
CLIENTS = [
    ("datastorm", "DataStorm"),
    ("librdkafka", "librdkafka (rdkafka crate)"),
    ("kafka", "Kafka ProducerPerformance (Java)"),
]
CLIENT_NAMES = dict(CLIENTS)
CONSUME_CLIENTS = [
    ("datastorm", "DataStorm"),
    ("librdkafka", "librdkafka (rdkafka crate)"),
    ("kafka", "Kafka ConsumerPerformance (Java)"),
]

# A run whose client cores were more than this busy with other processes'
# user time is flagged as disturbed.
CONTENTION_FLAG = 0.05


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(runs, key="client"):
    """Median figures per client (or per core count with key="cores")."""
    groups = {}
    for run in runs:
        groups.setdefault(run[key], []).append(run)
    out = {}
    for name, rs in groups.items():
        rates = [r["records_per_s"] for r in rs]
        out[name] = {
            "runs": len(rs),
            "records_per_s": median(rates),
            "records_per_s_min": min(rates),
            "records_per_s_max": max(rates),
            "payload_mb_per_s": median([r["payload_mb_per_s"] for r in rs]),
            "cpu_s_per_million": median([r["cpu_s_per_million"] for r in rs]),
            "latency_p50_us": median([r.get("latency_p50_us") for r in rs]),
            "latency_p99_us": median([r.get("latency_p99_us") for r in rs]),
            "client_busy_other": max(r.get("client_cpus_other_user_share") or 0 for r in rs),
            "server_cpu": median([r.get("server_process_cpu_share") for r in rs]),
        }
    return out


def fmt_int(x):
    return "n/a" if x is None else f"{x:,.0f}"


def fmt_ms(us):
    if us is None:
        return "n/a"
    ms = us / 1000
    return f"{ms:.2f} ms" if ms < 100 else f"{ms:.0f} ms"


def fmt_pct(us, floor_us=None):
    """A latency percentile; with floor_us, one kept rounded down to that
    unit (Kafka's EndToEndLatency: whole ms), shown as its range."""
    if us is None or not floor_us:
        return fmt_ms(us)
    if us < floor_us:
        return f"< {floor_us / 1000:g} ms"
    return f"{us / 1000:g} to {(us + floor_us) / 1000:g} ms"


def fmt_share(x):
    return "n/a" if x is None else f"{x * 100:.0f}%"


def fmt_ratio(x):
    return "n/a" if x is None else f"{x:.2f}x"


def spread(s):
    """Half the min-max range as a share of the median."""
    if not s["records_per_s"] or s["runs"] < 2:
        return ""
    half = (s["records_per_s_max"] - s["records_per_s_min"]) / 2 / s["records_per_s"]
    return f" ±{half * 100:.0f}%"


def against_datastorm(ds, s):
    """DataStorm's rate over a client's, the client's CPU per record over
    DataStorm's (None where a figure is missing), and the disturbed flag."""
    rate_ratio = cpu_ratio = None
    if ds and s["records_per_s"]:
        rate_ratio = ds["records_per_s"] / s["records_per_s"]
    if ds and ds["cpu_s_per_million"]:
        cpu_ratio = s["cpu_s_per_million"] / ds["cpu_s_per_million"]
    flag = " (disturbed)" if s["client_busy_other"] > CONTENTION_FLAG else ""
    return rate_ratio, cpu_ratio, flag


def compare_table(doc):
    """The side-by-side table (Markdown) of a compare results file."""
    summary = summarize(doc["runs"])
    ds = summary.get("datastorm")
    lines = [
        "| client | msgs/s (median, ± half range) | MB/s | client CPU s per M msgs "
        "| p50 | p99 | DataStorm msgs/s ÷ client's | client's CPU/msg ÷ DataStorm's |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for client, name in CLIENTS:
        s = summary.get(client)
        if s is None:
            continue
        rate_ratio, cpu_ratio, flag = against_datastorm(ds, s)
        lines.append(
            f"| {name}{flag} | {fmt_int(s['records_per_s'])}{spread(s)} "
            f"| {s['payload_mb_per_s']:.1f} | {s['cpu_s_per_million']:.3f} "
            f"| {fmt_ms(s['latency_p50_us'])} | {fmt_ms(s['latency_p99_us'])} "
            f"| {fmt_ratio(rate_ratio)} | {fmt_ratio(cpu_ratio)} |"
        )
    return "\n".join(lines)


def runs_table(doc):
    """Every run, in the order it ran (Markdown)."""
    scaling = doc.get("kind") == "scaling"
    head = "| round | cores |" if scaling else "| round | client |"
    lines = [
        head + " msgs/s | client CPU s | s | other processes on client cores | sink/broker process CPU |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in doc["runs"]:
        who = str(r["cores"]) if scaling else CLIENT_NAMES.get(r["client"], r["client"])
        other = r.get("client_cpus_other_user_share")
        busy = r.get("server_process_cpu_share")
        lines.append(
            f"| {r['round']} | {who} | {fmt_int(r['records_per_s'])} "
            f"| {r['cpu_user_s'] + r['cpu_system_s']:.2f} | {r['elapsed_s']:.1f} "
            f"| {fmt_share(other)} | {fmt_share(busy)} |"
        )
    return "\n".join(lines)


def scaling_table(doc):
    summary = summarize(doc["runs"], key="cores")
    base = summary.get(min(summary)) if summary else None
    lines = [
        "| producer cores | sink cores | msgs/s (median, ± half range) | MB/s "
        "| msgs/s per core | vs 1 core | client CPU s per M msgs | p99 | sink busy |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for cores in sorted(summary):
        s = summary[cores]
        sink_cores = next(r["server_cpus"] for r in doc["runs"] if r["cores"] == cores)
        per_core = s["records_per_s"] / cores
        vs = s["records_per_s"] / base["records_per_s"] if base else None
        lines.append(
            f"| {cores} | {len(sink_cores)} | {fmt_int(s['records_per_s'])}{spread(s)} "
            f"| {s['payload_mb_per_s']:.1f} | {fmt_int(per_core)} | {fmt_ratio(vs)} "
            f"| {s['cpu_s_per_million']:.3f} | {fmt_ms(s['latency_p99_us'])} "
            f"| {fmt_share(s['server_cpu'])} |"
        )
    return "\n".join(lines)


def consume_table(doc):
    """The consumers side by side (Markdown)."""
    summary = summarize(doc["runs"])
    ds = summary.get("datastorm")
    lines = [
        "| client | records/s (median, ± half range) | MB/s | client CPU s per M records "
        "| DataStorm records/s ÷ client's | client's CPU/record ÷ DataStorm's |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for client, name in CONSUME_CLIENTS:
        s = summary.get(client)
        if s is None:
            continue
        rate_ratio, cpu_ratio, flag = against_datastorm(ds, s)
        lines.append(
            f"| {name}{flag} | {fmt_int(s['records_per_s'])}{spread(s)} "
            f"| {s['payload_mb_per_s']:.1f} | {s['cpu_s_per_million']:.3f} "
            f"| {fmt_ratio(rate_ratio)} | {fmt_ratio(cpu_ratio)} |"
        )
    if ds is None:
        lines += ["", "DataStorm did not run (no `consume` command in its binary, or no figures in its report): no ratios."]
    return "\n".join(lines)


def consume_runs_table(doc):
    """Every consume run, in the order it ran (Markdown)."""
    names = dict(CONSUME_CLIENTS)
    lines = [
        "| round | client | records/s | client CPU s | measured s | wall s "
        "| other processes on client cores | broker process CPU |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in doc["runs"]:
        lines.append(
            f"| {r['round']} | {names.get(r['client'], r['client'])} | {fmt_int(r['records_per_s'])} "
            f"| {r['cpu_user_s'] + r['cpu_system_s']:.2f} | {r['elapsed_s']:.1f} | {r['wall_s']:.1f} "
            f"| {fmt_share(r.get('client_cpus_other_user_share'))} "
            f"| {fmt_share(r.get('server_process_cpu_share'))} |"
        )
    return "\n".join(lines)


def datastorm_args(settings):
    extra = settings.get("datastorm_args")
    return f"; DataStorm's extra flags: `{extra}`" if extra else ""


def consume_settings_line(doc):
    s = doc["settings"]
    m = doc["machine"]
    fill = {"kafka": "Kafka's ProducerPerformance", "librdkafka": "librdkafka",
            "datastorm": "DataStorm"}.get(s["fill"], s["fill"])
    return (
        f"One topic of {s['records']:,} {s['record_size']}-byte records ({s['payload_values']} distinct "
        f"printable random values), compression {s['compression']}, {s['partitions']} partitions, "
        f"written once by {fill}; each client reads all of it from the beginning; {s['repeat']} rounds; "
        f"client on CPU {s['client_cpus']}, one Kafka {doc['versions']['kafka']} broker on CPU "
        f"{s['server_cpus']}{datastorm_args(s)}. Machine: {m['logical_cpus']} x {m['cpu_model']}, Linux {m['kernel']}, "
        f"{m['memory_gib']} GiB. Run {doc['started_at'][:16].replace('T', ' ')} UTC at commit "
        f"{doc['git_commit']}, with `{doc['command']}`."
    )


def e2e_summary(runs):
    """Median figures per client: central (DataStorm's p50, Kafka's tool's
    average), p50, p99, p99.9, in microseconds."""
    groups = {}
    for run in runs:
        groups.setdefault(run["client"], []).append(run)
    out = {}
    for client, rs in groups.items():
        out[client] = {key: median([r.get(key) for r in rs])
                       for key in ("avg_us", "p50_us", "p99_us", "p99_9_us", "records_per_s")}
        out[client]["runs"] = len(rs)
        out[client]["percentile_floor_us"] = max(r.get("percentile_floor_us") or 0 for r in rs) or None
    return out


E2E_CLIENTS = [
    ("datastorm", "DataStorm (`produce --consumers 1`)"),
    ("kafka", "Kafka EndToEndLatency (Java)"),
]


def e2e_table(doc):
    """End-to-end latency side by side (Markdown)."""
    summary = e2e_summary(doc["runs"])
    lines = [
        "| client | records/s | average | p50 | p99 | p99.9 | runs |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for client, name in E2E_CLIENTS:
        s = summary.get(client)
        if s is None:
            continue
        floor = s["percentile_floor_us"]
        lines.append(
            f"| {name} | {fmt_int(s['records_per_s'])} | {fmt_ms(s['avg_us'])} "
            f"| {fmt_pct(s['p50_us'], floor)} | {fmt_pct(s['p99_us'], floor)} "
            f"| {fmt_pct(s['p99_9_us'], floor)} | {s['runs']} |"
        )
    if "datastorm" not in summary:
        lines += ["", "DataStorm did not run (no `--consumers` or no `consume.e2e_latency` in its report)."]
    return "\n".join(lines)


def e2e_goal(doc):
    """The issue's goal: DataStorm's p50 and p99 no worse than Kafka's
    tool's average and p99 in the same run; None without both."""
    summary = e2e_summary(doc["runs"])
    ds, kafka = summary.get("datastorm"), summary.get("kafka")
    if not ds or not kafka or None in (ds["p50_us"], ds["p99_us"], kafka["avg_us"], kafka["p99_us"]):
        return None
    # The tool's p99 is rounded down to whole ms: comparing with that floor
    # is the strict reading of the goal.
    met = ds["p50_us"] <= kafka["avg_us"] and ds["p99_us"] <= kafka["p99_us"]
    return (f"- Goal: DataStorm's e2e p50 ({fmt_ms(ds['p50_us'])}) no worse than EndToEndLatency's "
            f"average ({fmt_ms(kafka['avg_us'])}) and its p99 ({fmt_ms(ds['p99_us'])}) no worse than "
            f"EndToEndLatency's p99 ({fmt_pct(kafka['p99_us'], kafka['percentile_floor_us'])}, compared "
            f"with its lower end). **{'Met' if met else 'Not met'}.**")


def e2e_settings_line(doc):
    s = doc["settings"]
    m = doc["machine"]
    return (
        f"{s['record_size']}-byte records, acks={s['acks']}, {s['partitions']} partitions, a fresh topic "
        f"per run; DataStorm at {s['rate']:,} records/s for {s['seconds']:g} s (e2e from the intended "
        f"send time to consumption), Kafka's EndToEndLatency sending {s['kafka_records']:,} records one "
        f"at a time (each sent, acknowledged and polled back before the next; its percentiles are whole "
        f"milliseconds, rounded down); {s['repeat']} rounds; client on CPU {s['client_cpus']}, one Kafka "
        f"{doc['versions']['kafka']} broker on CPU {s['server_cpus']}{datastorm_args(s)}. Machine: {m['logical_cpus']} x "
        f"{m['cpu_model']}, Linux {m['kernel']}, {m['memory_gib']} GiB. Run "
        f"{doc['started_at'][:16].replace('T', ' ')} UTC at commit {doc['git_commit']}, with "
        f"`{doc['command']}`."
    )


def settings_line(doc):
    s = doc["settings"]
    m = doc["machine"]
    parts = [
        f"{s['record_size']}-byte records ({s['payload_values']} distinct printable random values, cycled)",
        f"compression {s['compression']}",
        f"acks={s['acks']}",
        f"batch.size {s['batch_size']}",
        f"linger {s['linger_ms']} ms",
        f"{s['max_in_flight']} requests in flight",
        f"{s['partitions']} partitions",
        f"{s['seconds']} s per run",
        f"{s['repeat']} rounds",
        f"client on CPU {s['client_cpus']}",
        f"{doc['target']} on CPU {s['server_cpus']}",
    ]
    when = doc["started_at"][:16].replace("T", " ")
    return (
        f"{'; '.join(parts)}. Machine: {m['logical_cpus']} x {m['cpu_model']}, "
        f"Linux {m['kernel']}, {m['memory_gib']} GiB. Run {when} UTC at commit "
        f"{doc['git_commit']}, with `{doc['command']}`."
    )


def scaling_svg(doc):
    """msgs/s against producer cores, with the linear extrapolation of the
    first point: a small hand-drawn SVG (no plotting library needed)."""
    summary = summarize(doc["runs"], key="cores")
    points = sorted((c, s["records_per_s"]) for c, s in summary.items())
    width, height, left, bottom, top, right = 560, 340, 80, 50, 30, 20
    max_cores = max(max(c for c, _ in points), 2)
    base = points[0][1] / points[0][0]
    ymax = max(max(y for _, y in points), base * max_cores) * 1.1
    sx = lambda c: left + (c / max_cores) * (width - left - right)  # noqa: E731
    sy = lambda y: height - bottom - (y / ymax) * (height - top - bottom)  # noqa: E731
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="14">'
        f"DataStorm against the sink: msgs/s by producer cores</text>",
        f'<line x1="{left}" y1="{sy(0)}" x2="{width - right}" y2="{sy(0)}" stroke="black"/>',
        f'<line x1="{left}" y1="{sy(0)}" x2="{left}" y2="{top}" stroke="black"/>',
    ]
    raw = ymax / 5
    mag = 10 ** len(str(int(raw))) / 10
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    for i in range(0, int(ymax / step) + 1):
        y = step * i
        out.append(
            f'<text x="{left - 6}" y="{sy(y) + 4}" text-anchor="end">{y / 1e6:g}M</text>'
            f'<line x1="{left}" y1="{sy(y)}" x2="{width - right}" y2="{sy(y)}" stroke="#ddd"/>'
        )
    for c in range(1, max_cores + 1):
        out.append(f'<text x="{sx(c)}" y="{sy(0) + 18}" text-anchor="middle">{c}</text>')
    out.append(
        f'<text x="{(left + width - right) / 2}" y="{height - 8}" text-anchor="middle">'
        "producer cores (the sink on the others)</text>"
    )
    out.append(
        f'<line x1="{sx(0)}" y1="{sy(0)}" x2="{sx(max_cores)}" y2="{sy(base * max_cores)}" '
        f'stroke="#999" stroke-dasharray="4 4"/>'
        f'<text x="{sx(max_cores) - 4}" y="{sy(base * max_cores) - 6}" text-anchor="end" '
        f'fill="#777">linear from 1 core</text>'
    )
    path = " ".join(f"{sx(c):.1f},{sy(y):.1f}" for c, y in points)
    out.append(f'<polyline points="{path}" fill="none" stroke="#1f77b4" stroke-width="2"/>')
    for c, y in points:
        out.append(
            f'<circle cx="{sx(c):.1f}" cy="{sy(y):.1f}" r="4" fill="#1f77b4"/>'
            f'<text x="{sx(c) + 6:.1f}" y="{sy(y) - 8:.1f}">{y / 1e6:.2f}M</text>'
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def machine():
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    return {
        "cpu_model": model,
        "logical_cpus": os.cpu_count(),
        "kernel": os.uname().release,
        "memory_gib": round(mem_kib / 2**20),
        "hostname": os.uname().nodename,
    }


def git_commit(root):
    try:
        rev = subprocess.run(
            ["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        return rev + ("+changes" if dirty else "")
    except OSError:
        return "unknown"
