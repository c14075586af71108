//! What this process's threads are doing, from `/proc/self/task`: for the
//! message of a run ended because a shard stopped making progress, so that
//! a rare stall says where it was (parked in `io_uring_enter`, waiting on
//! a lock, or running) rather than only that it happened.

use std::fmt::Write as _;

/// One line per thread: its name, its scheduler state and, when it is
/// blocked in a system call, which one (by number and, for the few a stall
/// is likely to be in, by name). Empty where `/proc` cannot be read.
pub fn describe() -> String {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return String::new();
    };
    let mut lines: Vec<String> = tasks
        .flatten()
        .map(|t| {
            let dir = t.path();
            let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
            let name = read("comm").trim().to_owned();
            // `stat`: "pid (comm) S ...": the state follows the last ')'.
            let stat = read("stat");
            let state = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next())
                .unwrap_or("?")
                .to_owned();
            let syscall = read("syscall");
            let call = syscall.split_whitespace().next().unwrap_or("?");
            let mut line = format!("{name} [{}] state {state}", t.file_name().to_string_lossy());
            match call.parse::<i64>() {
                Ok(n) => {
                    let _ = write!(line, ", in syscall {n}{}", syscall_name(n));
                }
                Err(_) if call == "running" => line.push_str(", running"),
                Err(_) => {}
            }
            line
        })
        .collect();
    lines.sort();
    lines.join("\n")
}

/// Names of the x86-64 system calls a stalled executor is
/// likely to be in.
fn syscall_name(n: i64) -> &'static str {
    if !cfg!(target_arch = "x86_64") {
        return "";
    }
    match n {
        0 => " (read)",
        7 => " (poll)",
        35 => " (nanosleep)",
        202 => " (futex)",
        219 => " (restart_syscall: an interrupted sleep resumed)",
        230 => " (clock_nanosleep)",
        232 => " (epoll_wait)",
        426 => " (io_uring_enter)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    /// A thread waiting on a channel shows, by name, asleep in a futex.
    #[test]
    fn names_a_parked_thread_and_where_it_waits() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let parked = std::thread::Builder::new()
            .name("threads-parked".into())
            .spawn(move || rx.recv())
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let line = loop {
            let text = super::describe();
            let line = text
                .lines()
                .find(|l| l.starts_with("threads-parked ["))
                .map(str::to_owned);
            match line {
                Some(l) if l.contains("state S") => break l,
                _ if Instant::now() > deadline => panic!("no parked line in:\n{text}"),
                _ => std::thread::sleep(Duration::from_millis(10)),
            }
        };
        if cfg!(target_arch = "x86_64") {
            assert!(line.ends_with("in syscall 202 (futex)"), "{line}");
        }
        tx.send(()).unwrap();
        parked.join().unwrap().unwrap();
    }
}
