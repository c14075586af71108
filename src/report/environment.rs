//! The report's `environment` and `tuning`: the machine the client ran on,
//! read with the tuning lab's host probes (`crate::tune::probe`).

use crate::tune::probe;
use datastorm_shards::run::RunOutcome;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Networking sysctls that change what a producer can push.
const SYSCTLS: &[&str] = &[
    "net.core.rmem_max",
    "net.core.wmem_max",
    "net.core.rmem_default",
    "net.core.wmem_default",
    "net.core.somaxconn",
    "net.core.netdev_max_backlog",
    "net.core.busy_poll",
    "net.core.busy_read",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
    "net.ipv4.tcp_mem",
    "net.ipv4.tcp_congestion_control",
    "net.ipv4.tcp_autocorking",
    "net.ipv4.tcp_notsent_lowat",
    "net.ipv4.tcp_slow_start_after_idle",
    "net.ipv4.ip_local_port_range",
];

/// Crates whose exact versions go into the report (from Cargo.lock at build time).
const CRATES: &[&str] = &[
    "glommio",
    "kafka-protocol",
    "lz4_flex",
    "hdrhistogram",
    "apache-avro",
    "crc32c",
];

/// The machine the client ran on (a merged report: the first instance's;
/// each instance's is under merge.reports).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Environment {
    /// The kernel release (kernel.osrelease).
    pub kernel: Option<String>,
    /// The kernel's name (kernel.ostype).
    pub os: Option<String>,
    pub hostname: Option<String>,
    /// From /proc/cpuinfo.
    pub cpu_model: Option<String>,
    /// CPUs the operating system offers this process.
    pub logical_cpus: usize,
    /// The CPUs the shards ran on.
    pub cpus_used: Vec<usize>,
    /// How many CPUs the shards ran on.
    pub cores_used: usize,
    /// Networking sysctls by name (whitespace collapsed); null where unreadable.
    #[schemars(transform = require_sysctls)]
    pub sysctl: BTreeMap<String, Option<String>>,
    /// RLIMIT_MEMLOCK (io_uring needs some); null where unreadable.
    pub memlock_limit: Option<Memlock>,
    /// Transparent huge pages: the bracketed word of each setting.
    pub transparent_hugepage: TransparentHugepage,
    /// Versions of DataStorm and the crates that shape its numbers.
    #[schemars(transform = require_datastorm)]
    pub crates: BTreeMap<String, String>,
    /// The Produce API versions the shards' connections used.
    pub produce_api_versions_used: BTreeSet<i16>,
}

/// Every report names each of [`SYSCTLS`], readable or not.
fn require_sysctls(schema: &mut schemars::Schema) {
    schema.insert("required".into(), SYSCTLS.to_vec().into());
}

/// Every report names its DataStorm version among the crates.
fn require_datastorm(schema: &mut schemars::Schema) {
    schema.insert("required".into(), vec!["datastorm"].into());
}

/// The memlock limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Memlock {
    pub soft_bytes: Limit,
    pub hard_bytes: Limit,
}

/// A resource limit: bytes, or "unlimited".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Limit {
    Bytes(u64),
    Unlimited(Unlimited),
}

/// The word a limit without a bound is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Unlimited {
    Unlimited,
}

impl Limit {
    fn of(bytes: Option<u64>) -> Limit {
        bytes.map_or(Limit::Unlimited(Unlimited::Unlimited), Limit::Bytes)
    }

    /// "unlimited" or the number of bytes.
    pub fn text(self) -> String {
        match self {
            Limit::Bytes(b) => b.to_string(),
            Limit::Unlimited(_) => "unlimited".into(),
        }
    }
}

/// /sys/kernel/mm/transparent_hugepage settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TransparentHugepage {
    pub enabled: Option<String>,
    pub defrag: Option<String>,
}

/// The host's tuning when the run started (`datastorm tune check`): the
/// live value of every setting a built-in profile (tuning/profiles) names,
/// null where the host has no such setting, and per profile the settings
/// that differ from it. Absent in reports written before the tuning lab.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Tuning {
    /// Live values by setting name (sysctls and `host.*`).
    pub settings: BTreeMap<String, Option<String>>,
    /// Per built-in profile, how this host differs from it.
    pub profiles: BTreeMap<String, ProfileVerdict>,
}

/// How the host compares with one profile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProfileVerdict {
    /// The settings whose live value differs from the profile's.
    pub differs: Vec<String>,
}

impl Environment {
    /// This host, and what the run used of it.
    pub fn probe(o: &RunOutcome) -> Environment {
        Environment {
            produce_api_versions_used: o.shards.iter().filter_map(|r| r.produce_version).collect(),
            ..Environment::of_host(o.shards.iter().map(|r| r.cpu))
        }
    }

    /// This host, and the CPUs a run used of it.
    pub fn of_host(cpus: impl Iterator<Item = usize>) -> Environment {
        let cpus_used: Vec<usize> = cpus.collect::<BTreeSet<_>>().into_iter().collect();
        let mut crates: BTreeMap<String, String> = locked_versions()
            .into_iter()
            .map(|(n, v)| (n.to_owned(), v))
            .collect();
        crates.insert("datastorm".into(), env!("CARGO_PKG_VERSION").into());
        Environment {
            kernel: probe::sysctl("kernel.osrelease"),
            os: probe::sysctl("kernel.ostype"),
            hostname: probe::sysctl("kernel.hostname"),
            cpu_model: probe::cpu_model(),
            logical_cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cores_used: cpus_used.len(),
            cpus_used,
            sysctl: SYSCTLS
                .iter()
                .map(|name| (name.to_string(), probe::sysctl(name)))
                .collect(),
            memlock_limit: probe::memlock().map(|(soft, hard)| Memlock {
                soft_bytes: Limit::of(soft),
                hard_bytes: Limit::of(hard),
            }),
            transparent_hugepage: TransparentHugepage {
                enabled: probe::thp("enabled"),
                defrag: probe::thp("defrag"),
            },
            crates,
            produce_api_versions_used: BTreeSet::new(),
        }
    }
}

/// Exact versions of [`CRATES`] from the Cargo.lock this binary was built with.
fn locked_versions() -> Vec<(&'static str, String)> {
    const LOCK: &str = include_str!("../../Cargo.lock");
    let mut out = Vec::new();
    let mut name = None;
    for line in LOCK.lines() {
        if line == "[[package]]" {
            name = None;
        } else if let Some(n) = line.strip_prefix("name = ") {
            name = CRATES.iter().find(|c| n.trim_matches('"') == **c).copied();
        } else if let (Some(n), Some(v)) = (name, line.strip_prefix("version = ")) {
            out.push((n, v.trim_matches('"').to_owned()));
            name = None;
        }
    }
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locked_versions_are_found() {
        let v = locked_versions();
        assert!(v.iter().any(|(n, _)| *n == "glommio"), "{v:?}");
        assert!(v.iter().all(|(_, ver)| ver.contains('.')), "{v:?}");
    }

    #[test]
    fn limits_read_back() {
        let m: Memlock =
            serde_json::from_str(r#"{"soft_bytes": 65536, "hard_bytes": "unlimited"}"#).unwrap();
        assert_eq!(m.soft_bytes, Limit::Bytes(65536));
        assert_eq!(m.hard_bytes.text(), "unlimited");
    }
}
