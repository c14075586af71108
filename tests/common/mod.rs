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
            // SAFETY: kill(2) on the child's pid, which is not reaped yet
            // (its waiter thread is still blocked on it).
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
            let out = rx.recv().expect("waiter").expect("output");
            panic!(
                "command did not finish within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
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
