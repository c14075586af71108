//! Settings that come from flags or from a run file's `[run]` table: the
//! same structs (clap's `Args` and serde's `Deserialize`), the same value
//! parsers, and flags winning over the file.

use clap::{ArgMatches, Args, FromArgMatches, ValueEnum};
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use std::fmt;
use std::time::Duration;

/// `T` as clap builds it from no flags: every default in one place.
pub fn clap_defaults<T: Args + FromArgMatches>() -> T {
    let cmd = T::augment_args(clap::Command::new("defaults"));
    let matches = cmd
        .try_get_matches_from(["defaults"])
        .expect("no flags parse");
    T::from_arg_matches(&matches).expect("defaults convert")
}

/// The argument ids (field names) of `T`'s flags.
pub fn arg_ids<T: Args>() -> Vec<String> {
    T::augment_args(clap::Command::new("ids"))
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .collect()
}

/// Whether a flag was given on the command line (not a default).
pub fn given_on_command_line(matches: &ArgMatches) -> impl Fn(&str) -> bool + '_ {
    |id| {
        matches.try_contains_id(id).unwrap_or(false)
            && matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine)
    }
}

/// Deserializes `T` from part of a table; an error names the key.
pub fn from_table<T: DeserializeOwned>(table: toml::Table) -> Result<T, String> {
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let path = e.path().to_string();
        let reason = e.into_inner().to_string();
        // The TOML layer adds "in `key`" lines; the path already names it.
        let reason = reason.lines().next().unwrap_or_default();
        format!("{path}: {reason}")
    })
}

/// Defines `overlay`, which takes `file`'s value of every field not given
/// on the command line (and overlays the nested flag groups), and
/// `OVERLAID`, the fields it covers.
macro_rules! overlay_fields {
    (fields: $($field:ident),* $(,)?; nested: $($nested:ident),* $(,)?) => {
        /// `self` from the command line, with `file`'s value of every
        /// field the command line did not give.
        pub fn overlay(&mut self, file: Self, given: &dyn Fn(&str) -> bool) {
            $( self.$nested.overlay(file.$nested, given); )*
            $( if !given(stringify!($field)) { self.$field = file.$field; } )*
        }

        /// The fields [`Self::overlay`] takes from a file.
        #[cfg(test)]
        pub const OVERLAID: &'static [&'static str] = &[$(stringify!($field)),*];
    };
}
pub(crate) use overlay_fields;

/// A flag's value as text: a string, or a number as written in TOML.
struct Text;

impl Visitor<'_> for Text {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or a number")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }
}

/// A value read with the flag's own parser, so `"64KiB"`, `65536`, `"5s"`
/// and `"1M"` mean in a file what they mean on the command line.
pub fn parsed<'de, D, T, E>(d: D, parse: impl Fn(&str) -> Result<T, E>) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    E: fmt::Display,
{
    let text = d.deserialize_any(Text)?;
    parse(&text).map_err(de::Error::custom)
}

/// A list: a TOML array, or one string of comma-separated values.
pub fn list<'de, D, T, E>(d: D, parse: impl Fn(&str) -> Result<T, E>) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    E: fmt::Display,
{
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        Many(Vec<toml::Value>),
        One(toml::Value),
    }
    let items = match OneOrMany::deserialize(d)? {
        OneOrMany::Many(items) => items,
        OneOrMany::One(toml::Value::String(s)) => s
            .split(',')
            .map(|p| toml::Value::String(p.to_owned()))
            .collect(),
        OneOrMany::One(v) => vec![v],
    };
    items
        .into_iter()
        .map(|v| parsed(v, &parse).map_err(de::Error::custom))
        .collect()
}

use serde::Deserialize as _;

/// A closed choice by one of its names, as the flag spells them.
pub fn choice<'de, D: Deserializer<'de>, T: ValueEnum>(d: D) -> Result<T, D::Error> {
    parsed(d, |name| {
        T::from_str(name, true).map_err(|_| {
            let names: Vec<String> = T::value_variants()
                .iter()
                .filter_map(|v| v.to_possible_value())
                .map(|v| v.get_name().to_owned())
                .collect();
            format!(
                "invalid value '{name}' [possible values: {}]",
                names.join(", ")
            )
        })
    })
}

/// [`choice`], for an optional flag.
pub fn some_choice<'de, D: Deserializer<'de>, T: ValueEnum>(d: D) -> Result<Option<T>, D::Error> {
    choice(d).map(Some)
}

/// A duration, as `--linger 5ms`.
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    parsed(d, crate::units::parse_duration)
}

/// [`duration`], for an optional flag.
pub fn some_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

/// A count, as `--count 1M`.
pub fn count<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    parsed(d, crate::units::parse_count)
}

/// [`count`], for an optional flag.
pub fn some_count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    count(d).map(Some)
}

/// A size, as `--batch-size 64KiB`.
pub fn bytes<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    parsed(d, crate::units::parse_bytes)
}

/// [`bytes`], for an optional flag.
pub fn some_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    bytes(d).map(Some)
}

/// Text, for flags that take text and numbers alike (`cpus = 3`).
pub fn some_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    parsed(d, |s| Ok::<_, String>(s.to_owned())).map(Some)
}

/// Strings, as a list or comma-separated (`bootstrap`).
pub fn strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    list(d, |s| Ok::<_, String>(s.to_owned()))
}

/// Counts, as a list or comma-separated (`steps`).
pub fn counts<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    list(d, crate::units::parse_count)
}
