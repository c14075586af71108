//! The tuning lab's host side: profiles (tuning/profiles), the live values
//! of what they set, and the comparison `datastorm tune check` prints and
//! every run report embeds.

pub mod probe;
pub mod profile;

use crate::report::{ProfileVerdict, Tuning};
use profile::{Profile, Setting};

/// How a live value compares with a profile's recommendation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Differs,
    /// The host has no such setting (no cpufreq in a VM, an older kernel).
    Unknown,
    /// Reported, not judged (`= any`).
    Info,
}

impl Status {
    pub fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Differs => "DIFFERS",
            Status::Unknown => "n/a",
            Status::Info => "info",
        }
    }
}

/// One setting of a profile against this host.
#[derive(Debug, Clone)]
pub struct Check {
    pub setting: Setting,
    pub current: Option<String>,
    pub status: Status,
}

/// Compares every setting of `profile` with the live value.
pub fn check(profile: &Profile) -> Vec<Check> {
    profile
        .settings
        .iter()
        .map(|s| {
            let current = probe::value(&s.name);
            let status = match &current {
                None => Status::Unknown,
                Some(_) if s.is_report_only() => Status::Info,
                Some(c) if s.satisfied_by(c) => Status::Ok,
                Some(_) => Status::Differs,
            };
            Check {
                setting: s.clone(),
                current,
                status,
            }
        })
        .collect()
}

/// The host's tuning as a report embeds it: the live value of every
/// setting any built-in profile names, and per profile the settings that
/// differ from it. Two reports' snapshots can be compared key by key.
pub fn snapshot() -> Tuning {
    let mut tuning = Tuning::default();
    for p in Profile::builtin() {
        let checks = check(&p);
        for c in &checks {
            tuning
                .settings
                .insert(c.setting.name.clone(), c.current.clone());
        }
        let differs = checks
            .iter()
            .filter(|c| c.status == Status::Differs)
            .map(|c| c.setting.name.clone())
            .collect();
        tuning
            .profiles
            .insert(p.name.clone(), ProfileVerdict { differs });
    }
    tuning
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_holds_every_profile_setting() {
        let snap = snapshot();
        for p in Profile::builtin() {
            for s in &p.settings {
                assert!(snap.settings.contains_key(&s.name), "{}", s.name);
            }
            assert!(snap.profiles.contains_key(&p.name));
        }
        assert!(snap.settings["net.core.somaxconn"].is_some());
    }
}
