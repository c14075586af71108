//! The tuning lab's host side: `datastorm tune check` on this machine, the
//! profiles, `tuning/apply` (dry run on the real host; apply and restore on
//! a fake /proc/sys tree, so no test needs root or changes the host), and
//! the tuning snapshot and engine knobs in run reports.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The setting names of a profile file, read the simple way.
fn profile_names(name: &str) -> Vec<String> {
    std::fs::read_to_string(repo(&format!("tuning/profiles/{name}.profile")))
        .expect("profile")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            l.split(|c: char| c.is_whitespace() || c == '=' || c == '>' || c == '<')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect()
}

fn live_sysctl(name: &str) -> String {
    std::fs::read_to_string(format!("/proc/sys/{}", name.replace('.', "/")))
        .expect("sysctl")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn tune_check_prints_every_setting_with_its_live_value() {
    for profile in ["throughput", "latency"] {
        let mut cmd = datastorm();
        cmd.args(["tune", "check", "--profile", profile]);
        let (out, _) = run_bounded(cmd, Duration::from_secs(30));
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines[0], format!("tuning profile: {profile}"));
        for col in ["setting", "current", "recommended", "status", "why"] {
            assert!(lines[1].contains(col), "{}", lines[1]);
        }
        for name in profile_names(profile) {
            assert!(
                lines.iter().any(|l| l.starts_with(&format!("{name} "))),
                "{name} missing:\n{stdout}"
            );
        }
        let somaxconn = lines
            .iter()
            .find(|l| l.starts_with("net.core.somaxconn "))
            .expect("somaxconn row");
        let live = live_sysctl("net.core.somaxconn");
        assert!(
            somaxconn.split_whitespace().nth(1) == Some(live.as_str()),
            "{somaxconn} vs {live}"
        );
        // glommio runs on this machine (the other tests need it), so the
        // probe must find io_uring.
        let uring = lines
            .iter()
            .find(|l| l.starts_with("host.io_uring "))
            .expect("io_uring row");
        assert!(
            uring.contains("available") && uring.contains(" ok "),
            "{uring}"
        );
        assert!(lines.last().unwrap().contains(" ok, "), "{stdout}");
    }
}

#[test]
fn tune_check_json_matches_the_table_and_strict_fails_on_differences() {
    let mut cmd = datastorm();
    cmd.args(["tune", "check", "--json", "--sources"]);
    let (out, _) = run_bounded(cmd, Duration::from_secs(30));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("JSON array");
    assert_eq!(rows.len(), profile_names("throughput").len());
    for r in &rows {
        for field in ["setting", "recommended", "status", "why", "source"] {
            assert!(r[field].is_string(), "{field} in {r}");
        }
        assert!(
            ["ok", "differs", "n/a", "info"].contains(&r["status"].as_str().unwrap()),
            "{r}"
        );
    }
    let wmem = rows
        .iter()
        .find(|r| r["setting"] == "net.ipv4.tcp_wmem")
        .expect("tcp_wmem");
    assert_eq!(wmem["current"], live_sysctl("net.ipv4.tcp_wmem"));
    let differs = rows.iter().any(|r| r["status"] == "differs");

    let mut cmd = datastorm();
    cmd.args(["tune", "check", "--strict"]);
    let (out, _) = run_bounded(cmd, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(if differs { 1 } else { 0 }));
}

#[test]
fn bad_profiles_are_usage_errors_that_name_the_line() {
    let dir = scratch("tune-bad-profile");
    let file = dir.join("mine.profile");
    std::fs::write(
        &file,
        "net.core.somaxconn >= 1024 | r | s\nnet.core.wmem_max 1 | r | s\n",
    )
    .unwrap();
    let mut cmd = datastorm();
    cmd.args(["tune", "check", "--profile"]).arg(&file);
    let (out, _) = run_bounded(cmd, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("mine.profile:2: no operator"), "{err}");

    let mut cmd = datastorm();
    cmd.args(["tune", "check", "--profile", "fastest"]);
    let (out, _) = run_bounded(cmd, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("throughput, latency"));
}

fn apply_script() -> Command {
    Command::new(repo("tuning/apply"))
}

#[test]
fn apply_dry_run_prints_changes_and_changes_nothing() {
    let names = [
        "net.core.wmem_max",
        "net.ipv4.tcp_wmem",
        "net.core.busy_read",
        "net.ipv4.tcp_autocorking",
    ];
    let before: Vec<String> = names.iter().map(|n| live_sysctl(n)).collect();
    for profile in ["throughput", "latency"] {
        let mut cmd = apply_script();
        cmd.arg(profile);
        let (out, _) = run_bounded(cmd, Duration::from_secs(30));
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
        assert!(stdout.contains("dry run: "), "{stdout}");
        // Each sysctl row shows the live value, and either "(kept)" or
        // "-> new value".
        let row = stdout
            .lines()
            .find(|l| l.trim_start().starts_with("net.core.wmem_max "))
            .expect("wmem_max row");
        assert!(row.contains(&live_sysctl("net.core.wmem_max")), "{row}");
        assert!(row.contains("(kept)") || row.contains(" -> "), "{row}");
    }
    let after: Vec<String> = names.iter().map(|n| live_sysctl(n)).collect();
    assert_eq!(before, after);
}

/// A fake /proc/sys and /sys with a few settings.
fn fake_tree(dir: &Path) -> (PathBuf, PathBuf) {
    let proc_sys = dir.join("proc-sys");
    let sys = dir.join("sys");
    for (path, value) in [
        ("net/core/wmem_max", "212992"),
        ("net/core/rmem_max", "33554432"),
        ("net/ipv4/tcp_wmem", "4096\t16384\t4194304"),
        ("net/ipv4/tcp_slow_start_after_idle", "1"),
        ("vm/swappiness", "0"),
    ] {
        let p = proc_sys.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, format!("{value}\n")).unwrap();
    }
    let thp = sys.join("kernel/mm/transparent_hugepage/enabled");
    std::fs::create_dir_all(thp.parent().unwrap()).unwrap();
    std::fs::write(&thp, "always [madvise] never\n").unwrap();
    (proc_sys, sys)
}

fn read_trim(p: PathBuf) -> String {
    std::fs::read_to_string(p).unwrap().trim().to_owned()
}

#[test]
fn apply_saves_previous_values_and_restore_puts_them_back() {
    let dir = scratch("tune-apply-fake");
    let (proc_sys, sys) = fake_tree(&dir);
    let saved = dir.join("saved.env");
    let mut cmd = apply_script();
    cmd.env("SYSCTL_ROOT", &proc_sys)
        .env("SYS_ROOT", &sys)
        .args(["--apply", "throughput", "--save"])
        .arg(&saved);
    let (out, _) = run_bounded(cmd, Duration::from_secs(30));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("applied 4 setting(s)"), "{stdout}");
    // Raised to the profile's floor; a limit already higher (rmem_max 32 MiB)
    // and a value already lower than a ceiling (swappiness 0) are kept.
    assert_eq!(read_trim(proc_sys.join("net/core/wmem_max")), "16777216");
    assert_eq!(
        read_trim(proc_sys.join("net/ipv4/tcp_wmem")),
        "4096 65536 16777216"
    );
    assert_eq!(read_trim(proc_sys.join("net/core/rmem_max")), "33554432");
    assert_eq!(read_trim(proc_sys.join("vm/swappiness")), "0");
    assert_eq!(
        read_trim(proc_sys.join("net/ipv4/tcp_slow_start_after_idle")),
        "0"
    );
    assert_eq!(
        read_trim(sys.join("kernel/mm/transparent_hugepage/enabled")),
        "always"
    );
    let saved_text = std::fs::read_to_string(&saved).unwrap();
    assert!(
        saved_text.contains("net.core.wmem_max=212992\n"),
        "{saved_text}"
    );
    assert!(
        saved_text.contains("net.ipv4.tcp_wmem=4096 16384 4194304\n"),
        "{saved_text}"
    );
    assert!(
        saved_text.contains("host.thp_enabled=madvise\n"),
        "{saved_text}"
    );

    let mut cmd = apply_script();
    cmd.env("SYSCTL_ROOT", &proc_sys)
        .env("SYS_ROOT", &sys)
        .arg("--restore")
        .arg(&saved);
    let (out, _) = run_bounded(cmd, Duration::from_secs(30));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(read_trim(proc_sys.join("net/core/wmem_max")), "212992");
    assert_eq!(
        read_trim(proc_sys.join("net/ipv4/tcp_wmem")),
        "4096 16384 4194304"
    );
    assert_eq!(
        read_trim(proc_sys.join("net/ipv4/tcp_slow_start_after_idle")),
        "1"
    );
    assert!(read_trim(sys.join("kernel/mm/transparent_hugepage/enabled")).contains("madvise"));
}

#[test]
fn apply_refuses_a_malformed_profile_before_changing_anything() {
    let dir = scratch("tune-apply-bad");
    let (proc_sys, sys) = fake_tree(&dir);
    let file = dir.join("bad.profile");
    std::fs::write(
        &file,
        "net.core.wmem_max >= 16777216 | r | s\nthis line is wrong\n",
    )
    .unwrap();
    let mut cmd = apply_script();
    cmd.env("SYSCTL_ROOT", &proc_sys)
        .env("SYS_ROOT", &sys)
        .arg("--apply")
        .arg(&file);
    let (out, _) = run_bounded(cmd, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains(":2:"), "{}", text(&out.stderr));
    assert_eq!(read_trim(proc_sys.join("net/core/wmem_max")), "212992");
}

#[test]
fn reports_embed_the_tuning_snapshot_and_the_engine_knobs() {
    let dir = scratch("tune-report");
    let report = dir.join("run.json");
    let mut cmd = datastorm();
    cmd.args([
        "produce",
        "--count",
        "50000",
        "--cores",
        "1",
        "--ring-depth",
        "64",
        "--preempt-timer",
        "200us",
        "--spin-before-park",
        "1ms",
        "--socket-send-buffer",
        "1MiB",
        "--nodelay",
        "false",
        "--quiet",
        "--report",
    ])
    .arg(&report);
    let (out, _) = run_bounded(cmd, Duration::from_secs(120));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc = read_json(&report);
    assert_eq!(doc["results"]["records_acked"], 50_000);
    let tuning = &doc["tuning"];
    assert_eq!(
        tuning["settings"]["net.core.somaxconn"],
        live_sysctl("net.core.somaxconn")
    );
    assert_eq!(tuning["settings"]["host.io_uring"], "available");
    assert!(tuning["profiles"]["throughput"]["differs"].is_array());
    assert!(tuning["profiles"]["latency"]["differs"].is_array());
    let ex = &doc["config"]["executor"];
    assert_eq!(ex["ring_depth"], 64);
    assert_eq!(ex["preempt_timer"]["nanos"], 200_000);
    assert_eq!(ex["spin_before_park"]["nanos"], 1_000_000);
    let sock = &doc["config"]["socket"];
    assert_eq!(sock["nodelay"], false);
    assert_eq!(sock["send_buffer"], 1_048_576);
    assert!(sock["receive_buffer"].is_null());

    // `report compare` names the knobs that differ between two runs.
    let plain = dir.join("plain.json");
    let mut cmd = datastorm();
    cmd.args([
        "produce", "--count", "20000", "--cores", "1", "--quiet", "--report",
    ])
    .arg(&plain);
    let (out, _) = run_bounded(cmd, Duration::from_secs(120));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut cmd = datastorm();
    cmd.args(["report", "compare"]).arg(&report).arg(&plain);
    let (out, _) = run_bounded(cmd, Duration::from_secs(30));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let row = |name: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no {name} row:\n{stdout}"))
            .to_owned()
    };
    let ring = row("ring-depth");
    assert!(ring.contains("64") && ring.contains("128"), "{ring}");
    let nodelay = row("nodelay");
    assert!(
        nodelay.contains("false") && nodelay.contains("true"),
        "{nodelay}"
    );
}

#[test]
fn apply_without_root_refuses_and_changes_nothing() {
    // As root (CI containers, this lab), drop to nobody with setpriv(1);
    // as a user, run as is.
    // SAFETY: geteuid(2) has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let mut cmd = match (root, setpriv) {
        (false, _) => apply_script(),
        (true, Some(setpriv)) => {
            let mut c = Command::new(setpriv);
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(repo("tuning/apply"));
            c
        }
        (true, None) => panic!("running as root without setpriv(1): cannot drop root"),
    };
    cmd.args(["--apply", "throughput", "--save", "/nonexistent/saved.env"]);
    let before = live_sysctl("net.core.wmem_max");
    let (out, _) = run_bounded(cmd, Duration::from_secs(30));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("needs root"), "{err}");
    assert_eq!(live_sysctl("net.core.wmem_max"), before);
}
