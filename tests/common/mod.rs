//! Helpers for tests that run the `datastorm` binary.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn datastorm() -> Command {
    Command::new(env!("CARGO_BIN_EXE_datastorm"))
}

/// Runs a command with a time limit; panics if it hangs. Output is read
/// while the command runs, so a chatty command cannot block on a full pipe.
pub fn run_bounded(mut cmd: Command, limit: Duration) -> (Output, Duration) {
    let start = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => (out.expect("output"), start.elapsed()),
        Err(_) => {
            // Where it hangs, before it is killed: a hang that happens once
            // in many runs cannot be looked at afterwards.
            let stacks = thread_stacks(pid);
            // SAFETY: kill(2) on the child's pid, which is not reaped yet
            // (its waiter thread is still blocked on it).
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
            let out = rx.recv().expect("waiter").expect("output");
            panic!(
                "command did not finish within {limit:?}\nstdout:\n{}\nstderr:\n{}\n\
                 its threads' stacks:\n{stacks}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// Every thread's stack of process `pid`, by gdb in batch mode (bounded to
/// 60 s by coreutils' `timeout`), or why there are none.
fn thread_stacks(pid: u32) -> String {
    let out = Command::new("timeout")
        .args(["60", "gdb", "-p", &pid.to_string(), "-batch", "-nx"])
        .args(["-ex", "thread apply all bt 30"])
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            // The stack lines, not gdb's banner and symbol-loading chatter.
            let lines: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with("Thread ") || l.starts_with('#'))
                .collect();
            lines.join("\n")
        }
        Ok(o) => format!(
            "(gdb failed, {}: {})",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => format!("(no gdb stacks: {e})"),
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs a command (two minutes at most) that must succeed; its stdout.
pub fn run_ok(cmd: Command, what: &str) -> String {
    let (out, _) = run_bounded(cmd, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "{what} failed:\nstdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// A fresh path under the target directory for a test's files.
pub fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

pub fn read_json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("report exists"))
        .expect("valid JSON")
}

/// A `datastorm sink` process on an ephemeral loopback port, killed on drop.
pub struct SinkProcess {
    child: std::process::Child,
    pub addr: String,
}

impl SinkProcess {
    /// Starts `datastorm sink` with `extra` flags and waits for its address.
    pub fn start(extra: &[&str]) -> SinkProcess {
        use std::io::BufRead;
        let mut child = datastorm()
            .args(["sink", "--listen", "127.0.0.1:0", "--duration", "300s"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn sink");
        let stdout = child.stdout.take().expect("sink stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = std::io::BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            // Keep draining so the sink never blocks on a full pipe.
            for _ in lines {}
        });
        let first = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the sink prints its address");
        let addr = first
            .split_whitespace()
            .find(|w| w.starts_with("127.0.0.1:"))
            .unwrap_or_else(|| panic!("no address in {first:?}"))
            .to_owned();
        SinkProcess { child, addr }
    }
}

impl Drop for SinkProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The rows of a `--timeline` CSV as (column name -> value) maps.
pub fn read_timeline(path: &std::path::Path) -> Vec<std::collections::HashMap<String, String>> {
    let text = std::fs::read_to_string(path).expect("timeline exists");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    lines
        .map(|l| {
            header
                .iter()
                .zip(l.split(','))
                .map(|(h, v)| ((*h).to_owned(), v.to_owned()))
                .collect()
        })
        .collect()
}

/// A variable scripts/test sets for the Kafka lab tests.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run these tests through scripts/test, which starts the Kafka lab"
        )
    })
}

/// Runs `scripts/kafka-lab ARGS` (two minutes at most); panics if it fails.
/// Returns its stdout.
pub fn lab(args: &[&str]) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kafka-lab");
    let mut cmd = Command::new(script);
    cmd.args(args);
    let (out, _) = run_bounded(cmd, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "kafka-lab {args:?} failed:\n{}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// A topic name no earlier run used (the lab clusters outlive one test run
/// when run by hand).
pub fn fresh_topic(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    )
}
