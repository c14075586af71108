//! Tuning profiles (tuning/profiles/*.profile): one setting per line,
//! `NAME OP VALUE | why | source`, the same files `tuning/apply` reads.

use std::fmt;
use std::path::Path;

/// The profiles shipped in tuning/profiles, compiled in so that
/// `datastorm tune check` works from any directory.
const BUILTIN: &[(&str, &str)] = &[
    (
        "throughput",
        include_str!("../../tuning/profiles/throughput.profile"),
    ),
    (
        "latency",
        include_str!("../../tuning/profiles/latency.profile"),
    ),
];

/// How a live value is compared with the recommended one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Exactly this value (`=`); `any` means "reported only".
    Eq,
    /// At least this value (`>=`), field by field for lists like tcp_wmem.
    AtLeast,
    /// At most this value (`<=`), field by field.
    AtMost,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Eq => "=",
            Op::AtLeast => ">=",
            Op::AtMost => "<=",
        })
    }
}

/// One line of a profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// A sysctl (`net.core.wmem_max`) or a host setting (`host.smt`).
    pub name: String,
    pub op: Op,
    /// Whitespace-separated fields, squeezed to single spaces.
    pub value: String,
    pub why: String,
    pub source: String,
}

impl Setting {
    /// `any`: the setting is reported, not judged.
    pub fn is_report_only(&self) -> bool {
        self.value == "any"
    }

    /// Whether `current` (whitespace-separated fields) satisfies this
    /// setting. Numbers compare as numbers, field by field; other values
    /// compare as words.
    pub fn satisfied_by(&self, current: &str) -> bool {
        if self.is_report_only() {
            return true;
        }
        let cur: Vec<&str> = current.split_whitespace().collect();
        let want: Vec<&str> = self.value.split_whitespace().collect();
        if cur.len() != want.len() {
            return false;
        }
        cur.iter().zip(&want).all(
            |(c, w)| match (c.parse::<u64>(), w.parse::<u64>(), self.op) {
                (Ok(c), Ok(w), Op::AtLeast) => c >= w,
                (Ok(c), Ok(w), Op::AtMost) => c <= w,
                (Ok(c), Ok(w), Op::Eq) => c == w,
                _ => c == w,
            },
        )
    }

    /// The recommendation as shown to people: `>= 16777216`, `= 0`, `any`.
    pub fn recommended(&self) -> String {
        if self.is_report_only() {
            "-".into()
        } else {
            format!("{} {}", self.op, self.value)
        }
    }
}

/// A parsed profile.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    pub settings: Vec<Setting>,
}

/// Why a profile could not be read.
#[derive(Debug)]
pub enum ProfileError {
    Syntax {
        origin: String,
        line: usize,
        reason: String,
    },
    Unknown(String),
    Read {
        path: String,
        source: std::io::Error,
    },
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProfileError::Syntax {
                origin,
                line,
                reason,
            } => write!(
                f,
                "{origin}:{line}: {reason} (expected `NAME OP VALUE | why | source`, \
                 OP one of =, >=, <=)"
            ),
            ProfileError::Unknown(name) => write!(
                f,
                "no profile '{name}': give throughput, latency or the path of a .profile file"
            ),
            ProfileError::Read { path, source } => write!(f, "could not read {path}: {source}"),
        }
    }
}

impl std::error::Error for ProfileError {}

impl Profile {
    /// A built-in profile by name, or a profile file by path.
    pub fn load(name_or_path: &str) -> Result<Profile, ProfileError> {
        if let Some((name, text)) = BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
            return Profile::parse(name, text);
        }
        let path = Path::new(name_or_path);
        if !path.exists() {
            return Err(ProfileError::Unknown(name_or_path.to_owned()));
        }
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
            path: name_or_path.to_owned(),
            source,
        })?;
        let name = path
            .file_stem()
            .map_or(name_or_path.into(), |s| s.to_string_lossy().into_owned());
        Profile::parse(&name, &text).map_err(|e| match e {
            ProfileError::Syntax { line, reason, .. } => ProfileError::Syntax {
                origin: name_or_path.to_owned(),
                line,
                reason,
            },
            other => other,
        })
    }

    /// Every built-in profile.
    pub fn builtin() -> Vec<Profile> {
        BUILTIN
            .iter()
            .map(|(n, t)| Profile::parse(n, t).expect("built-in profiles parse"))
            .collect()
    }

    /// Parses a profile's text; `name` labels it (and its errors).
    pub fn parse(name: &str, text: &str) -> Result<Profile, ProfileError> {
        let mut settings: Vec<Setting> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |reason: &str| ProfileError::Syntax {
                origin: name.to_owned(),
                line: i + 1,
                reason: reason.to_owned(),
            };
            let mut parts = line.splitn(3, '|').map(str::trim);
            let setting = parts.next().unwrap_or_default();
            let why = parts.next().unwrap_or_default();
            let source = parts.next().unwrap_or_default();
            if why.is_empty() || source.is_empty() {
                return Err(err("every setting needs a reason and a source"));
            }
            let (name_part, op, value) = [(">=", Op::AtLeast), ("<=", Op::AtMost), ("=", Op::Eq)]
                .iter()
                .find_map(|(tok, op)| {
                    setting
                        .split_once(tok)
                        .map(|(n, v)| (n.trim(), *op, v.trim()))
                })
                .ok_or_else(|| err("no operator"))?;
            if name_part.is_empty()
                || !name_part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            {
                return Err(err(&format!("bad setting name {name_part:?}")));
            }
            if value.is_empty() {
                return Err(err("no value"));
            }
            if op != Op::Eq && value.split_whitespace().any(|f| f.parse::<u64>().is_err()) {
                return Err(err(">= and <= need numbers"));
            }
            if settings.iter().any(|s| s.name == name_part) {
                return Err(err(&format!("{name_part} is set twice")));
            }
            settings.push(Setting {
                name: name_part.to_owned(),
                op,
                value: value.split_whitespace().collect::<Vec<_>>().join(" "),
                why: why.to_owned(),
                source: source.to_owned(),
            });
        }
        if settings.is_empty() {
            return Err(ProfileError::Syntax {
                origin: name.to_owned(),
                line: 0,
                reason: "the profile sets nothing".into(),
            });
        }
        Ok(Profile {
            name: name.to_owned(),
            settings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_profiles_parse_with_reasons_and_sources() {
        let all = Profile::builtin();
        assert_eq!(all.len(), 2);
        for p in &all {
            assert!(p.settings.len() >= 10, "{}", p.name);
            for s in &p.settings {
                assert!(s.why.len() > 10 && s.source.len() > 5, "{s:?}");
            }
        }
        let t = Profile::load("throughput").unwrap();
        let wmem = t.settings.iter().find(|s| s.name == "net.ipv4.tcp_wmem");
        assert_eq!(
            wmem.map(|s| (s.op, s.value.as_str())),
            Some((Op::AtLeast, "4096 65536 16777216"))
        );
    }

    #[test]
    fn comparisons_go_field_by_field() {
        let p = Profile::parse(
            "t",
            "a >= 4096 65536 16777216 | r | s\nb = 0 | r | s\nc <= 1 | r | s\nd = madvise | r | s\ne = any | r | s",
        )
        .unwrap();
        let [a, b, c, d, e] = &p.settings[..] else {
            panic!("{p:?}")
        };
        assert!(a.satisfied_by("4096\t65536\t33554432"));
        assert!(!a.satisfied_by("4096 16384 33554432"));
        assert!(!a.satisfied_by("4096 65536"));
        assert!(b.satisfied_by("0") && !b.satisfied_by("1"));
        assert!(c.satisfied_by("0") && !c.satisfied_by("60"));
        assert!(d.satisfied_by("madvise") && !d.satisfied_by("always"));
        assert!(e.satisfied_by("whatever") && e.is_report_only());
        assert_eq!(a.recommended(), ">= 4096 65536 16777216");
        assert_eq!(e.recommended(), "-");
    }

    #[test]
    fn bad_lines_name_their_line() {
        for (text, needle) in [
            ("a = 1", "reason and a source"),
            ("# c\n\na 1 | r | s", "no operator"),
            ("a b = 1 | r | s", "bad setting name"),
            ("a >= lots | r | s", "need numbers"),
            ("a = 1 | r | s\na = 2 | r | s", "set twice"),
            ("# only comments", "sets nothing"),
        ] {
            let e = Profile::parse("p", text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
            assert!(e.starts_with("p:"), "{e}");
        }
        let e = Profile::parse("p", "x = 1 | r | s\ny 2 | r | s").unwrap_err();
        assert!(e.to_string().starts_with("p:2:"), "{e}");
        assert!(matches!(
            Profile::load("no-such-profile"),
            Err(ProfileError::Unknown(_))
        ));
    }
}
