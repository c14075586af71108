//! Reading the host's live settings: sysctls, CPU frequency governors, SMT,
//! transparent huge pages, the memlock limit, io_uring and NIC interrupts.
//!
//! Every probe returns `None` (shown as "n/a") when the host has no such
//! setting (no cpufreq in a VM, a sysctl from another kernel), never fails.

use std::collections::BTreeMap;
use std::path::Path;

/// Whitespace squeezed to single spaces ("4096\t16384\t4194304" becomes
/// "4096 16384 4194304").
fn squeeze(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn read(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| squeeze(&s))
}

/// A sysctl's value (`net.ipv4.tcp_wmem`), from /proc/sys.
pub fn sysctl(name: &str) -> Option<String> {
    read(format!("/proc/sys/{}", name.replace('.', "/")))
}

/// The live value of a profile setting: a sysctl, or a `host.` setting.
pub fn value(name: &str) -> Option<String> {
    match name {
        "host.cpu_governor" => cpu_governor(),
        "host.thp_enabled" => thp("enabled"),
        "host.smt" => smt(),
        "host.memlock" => memlock_soft().map(|v| v.map_or("unlimited".into(), |b| b.to_string())),
        "host.io_uring" => Some(io_uring()),
        "host.nic_irqs" => nic_irqs(),
        other if other.starts_with("host.") => None,
        sysctl_name => sysctl(sysctl_name),
    }
}

/// The CPU frequency governor: one word when every CPU agrees, otherwise
/// each governor with its CPU count ("performance x6, powersave x2").
pub fn cpu_governor() -> Option<String> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let dir = std::fs::read_dir("/sys/devices/system/cpu").ok()?;
    for entry in dir.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !name.starts_with("cpu") || !name[3..].chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        if let Some(g) = read(entry.path().join("cpufreq/scaling_governor")) {
            *counts.entry(g).or_default() += 1;
        }
    }
    match counts.len() {
        0 => None,
        1 => counts.into_keys().next(),
        _ => Some(
            counts
                .iter()
                .map(|(g, n)| format!("{g} x{n}"))
                .collect::<Vec<_>>()
                .join(", "),
        ),
    }
}

/// "always \[madvise\] never": the bracketed word is the setting.
pub fn thp(file: &str) -> Option<String> {
    let s = read(format!("/sys/kernel/mm/transparent_hugepage/{file}"))?;
    Some(
        s.split_whitespace()
            .find(|w| w.starts_with('['))
            .map(|w| w.trim_matches(['[', ']']).to_owned())
            .unwrap_or(s),
    )
}

/// SMT: "on", "off", or the control file's word ("notsupported",
/// "forceoff") when it is neither.
pub fn smt() -> Option<String> {
    let control = read("/sys/devices/system/cpu/smt/control");
    match read("/sys/devices/system/cpu/smt/active").as_deref() {
        Some("1") => Some("on".into()),
        Some("0") => Some(match control.as_deref() {
            Some("on") | Some("off") | None => "off".into(),
            Some(other) => other.into(),
        }),
        _ => control,
    }
}

/// The soft RLIMIT_MEMLOCK in bytes; `Some(None)` is unlimited.
pub fn memlock_soft() -> Option<Option<u64>> {
    memlock().map(|(soft, _)| soft)
}

/// The soft and hard RLIMIT_MEMLOCK in bytes (`None`: unlimited); io_uring
/// needs some.
pub fn memlock() -> Option<(Option<u64>, Option<u64>)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass it.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0 {
        return None;
    }
    let bytes = |x: libc::rlim_t| (x != libc::RLIM_INFINITY).then_some(x);
    Some((bytes(lim.rlim_cur), bytes(lim.rlim_max)))
}

/// The CPU's model name, from /proc/cpuinfo.
pub fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
}

/// Whether this process can create an io_uring: "available", or why not.
/// Creates (and closes) a one-entry ring, which is what glommio needs; the
/// sysctl alone does not say whether a seccomp filter or a container
/// runtime blocks the syscall.
pub fn io_uring() -> String {
    // struct io_uring_params is 120 bytes; zeroed asks for defaults.
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup(2) with a valid, writable params buffer of the
    // size the kernel expects; the returned fd is closed below.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
    if fd >= 0 {
        // SAFETY: fd is the ring we just created and nothing else holds it.
        unsafe { libc::close(fd as i32) };
        return "available".into();
    }
    let err = std::io::Error::last_os_error();
    let disabled = sysctl("kernel.io_uring_disabled");
    match err.raw_os_error() {
        Some(libc::ENOSYS) => "not in this kernel (needs Linux 5.8+)".into(),
        Some(libc::EPERM) | Some(libc::EACCES) => format!(
            "blocked ({err}; kernel.io_uring_disabled = {})",
            disabled.as_deref().unwrap_or("n/a")
        ),
        Some(libc::ENOMEM) => format!("no memory for a ring ({err}): raise the memlock limit"),
        _ => format!("unavailable ({err})"),
    }
}

/// Interrupts of the physical NICs and the CPUs they may run on, e.g.
/// "eth0: 3 IRQs on CPUs 0-1". Virtual interfaces (lo, bridges, veth) have
/// no device and are skipped; `None` when there is no NIC at all.
pub fn nic_irqs() -> Option<String> {
    let interrupts = std::fs::read_to_string("/proc/interrupts").ok()?;
    let mut out = Vec::new();
    let mut nics: Vec<(String, String)> = std::fs::read_dir("/sys/class/net")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let iface = e.file_name().to_string_lossy().into_owned();
            let dev = std::fs::read_link(e.path().join("device")).ok()?;
            let dev = dev.file_name()?.to_string_lossy().into_owned();
            Some((iface, dev))
        })
        .collect();
    nics.sort();
    for (iface, dev) in nics {
        let mut affinities: Vec<String> = Vec::new();
        let mut count = 0;
        for line in interrupts.lines() {
            let Some((irq, rest)) = line.trim_start().split_once(':') else {
                continue;
            };
            let Ok(irq) = irq.parse::<u32>() else {
                continue;
            };
            let name = rest.split_whitespace().last().unwrap_or_default();
            // virtio NICs name their queues after the device ("virtio2-input.0"),
            // most drivers after the interface ("eth0-TxRx-3", "mlx5_comp0@pci:...").
            let ours = name.starts_with(&format!("{iface}-"))
                || name == iface
                || name.starts_with(&format!("{dev}-"));
            if !ours {
                continue;
            }
            count += 1;
            if let Some(a) = read(format!("/proc/irq/{irq}/smp_affinity_list")) {
                if !affinities.contains(&a) {
                    affinities.push(a);
                }
            }
        }
        out.push(if count == 0 {
            format!("{iface}: no IRQs of its own")
        } else {
            format!("{iface}: {count} IRQs on CPUs {}", affinities.join(" / "))
        });
    }
    (!out.is_empty()).then(|| out.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_every_linux_host_has() {
        assert!(sysctl("net.core.somaxconn").is_some_and(|v| v.parse::<u32>().is_ok()));
        let wmem = sysctl("net.ipv4.tcp_wmem").expect("tcp_wmem");
        assert_eq!(wmem.split(' ').count(), 3, "{wmem:?}");
        assert_eq!(sysctl("net.core.no_such_setting"), None);
        assert!(memlock_soft().is_some());
        assert!(!io_uring().is_empty());
        assert_eq!(value("host.no_such_thing"), None);
    }
}
