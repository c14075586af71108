//! Workload flags of `produce`: rate profiles, warm-up, instances.

use super::settings;
use crate::units::{self, UnitError};
use clap::Args;
use datastorm_shards::plan::RateSpec;
use std::time::Duration;

/// Workload flags that do not fit, alone or together.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WorkloadError {
    #[error(transparent)]
    Unit(#[from] UnitError),
    #[error("a rate must be at least 1 record per second")]
    RateBelowOne,
    #[error("'{0}' is not FROM:TO:DURATION, e.g. 100k:1M:60s")]
    RampForm(String),
    #[error("'{0}': a ramp needs a duration and a rate above 0")]
    FlatRamp(String),
    #[error("'{0}' is not AT:DURATION, e.g. 2s:500ms")]
    StallForm(String),
    #[error("--max-p99 bounds the --rate max search; add --rate max")]
    MaxP99WithoutSearch,
    #[error("--step-duration goes with --steps or --rate max")]
    StepDurationAlone,
    #[error("--steps needs a rate above 0")]
    NoStepAboveZero,
    #[error("--instances must be at least 1")]
    NoInstances,
    #[error("JOB_COMPLETION_INDEX={0:?} is not an instance index (0, 1, ...)")]
    JobIndex(String),
    #[error("instance {index} is out of range: --instances {instances} numbers them 0 to {}", instances - 1)]
    InstanceOutOfRange { index: u32, instances: u32 },
}

/// `--rate`: records per second, or `max`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateFlag {
    PerS(f64),
    Max,
}

fn parse_rate(s: &str) -> Result<RateFlag, WorkloadError> {
    if s.trim() == "max" {
        return Ok(RateFlag::Max);
    }
    let r = units::parse_count(s)?;
    if r < 1.0 {
        return Err(WorkloadError::RateBelowOne);
    }
    Ok(RateFlag::PerS(r))
}

/// `--ramp FROM:TO:DURATION`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ramp {
    pub from: f64,
    pub to: f64,
    pub over: Duration,
}

fn parse_ramp(s: &str) -> Result<Ramp, WorkloadError> {
    let parts: Vec<&str> = s.split(':').collect();
    let [from, to, over] = parts.as_slice() else {
        return Err(WorkloadError::RampForm(s.into()));
    };
    let ramp = Ramp {
        from: units::parse_count(from)?,
        to: units::parse_count(to)?,
        over: units::parse_duration(over)?,
    };
    if ramp.over.is_zero() || (ramp.from == 0.0 && ramp.to == 0.0) {
        return Err(WorkloadError::FlatRamp(s.into()));
    }
    Ok(ramp)
}

/// `--inject-stall AT:DURATION`.
fn parse_stall(s: &str) -> Result<(Duration, Duration), WorkloadError> {
    let (at, d) = s
        .split_once(':')
        .ok_or_else(|| WorkloadError::StallForm(s.into()))?;
    Ok((units::parse_duration(at)?, units::parse_duration(d)?))
}

#[derive(Args, Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkloadArgs {
    /// Target records per second for the whole run (all shards and
    /// instances), e.g. 500k; or `max` to search for the highest rate the
    /// cluster sustains (see --max-p99). Default: as fast as acknowledged.
    #[arg(long, value_parser = parse_rate, value_name = "RATE|max")]
    #[serde(deserialize_with = "de_rate")]
    pub rate: Option<RateFlag>,
    /// A linear ramp, FROM:TO:DURATION (e.g. 100k:1M:60s), then TO.
    #[arg(long, value_parser = parse_ramp, conflicts_with_all = ["rate", "steps"], value_name = "FROM:TO:DURATION")]
    #[serde(deserialize_with = "de_ramp")]
    pub ramp: Option<Ramp>,
    /// Rate steps, e.g. 100k,200k,400k, each held for --step-duration.
    #[arg(long, value_delimiter = ',', value_parser = units::parse_count, conflicts_with = "rate", value_name = "RATE,...")]
    #[serde(deserialize_with = "settings::counts")]
    pub steps: Vec<f64>,
    /// How long each of --steps (default 30s) or each --rate max trial
    /// (default 5s) lasts.
    #[arg(long, value_parser = units::parse_duration)]
    #[serde(deserialize_with = "settings::some_duration")]
    pub step_duration: Option<Duration>,
    /// --rate max: a rate whose p99 latency passes this bound is not sustained.
    #[arg(long, value_parser = units::parse_duration)]
    #[serde(deserialize_with = "settings::some_duration")]
    pub max_p99: Option<Duration>,
    /// --rate max: the first rate tried.
    #[arg(long, value_parser = units::parse_count, default_value = "10k")]
    #[serde(deserialize_with = "settings::count")]
    pub search_start: f64,
    /// Run this long first, at the first rate, and leave it out of the
    /// results (it is in the timeline, marked warmup).
    #[arg(long, value_parser = units::parse_duration, default_value = "0s")]
    #[serde(deserialize_with = "settings::duration")]
    pub warmup: Duration,
    /// This instance's index (0-based) among --instances. Default: the
    /// JOB_COMPLETION_INDEX environment variable (a Kubernetes Indexed Job), else 0.
    #[arg(long)]
    pub instance: Option<u32>,
    /// Instances running the same plan: partitions, rate and count are
    /// split disjointly between them.
    #[arg(long, default_value_t = 1)]
    pub instances: u32,
    /// Testing aid: block shard 0 for DURATION at AT into the run (AT:DURATION).
    #[arg(long, value_parser = parse_stall, hide = true)]
    #[serde(deserialize_with = "de_stall")]
    pub inject_stall: Option<(Duration, Duration)>,
}

fn de_rate<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<RateFlag>, D::Error> {
    settings::parsed(d, parse_rate).map(Some)
}

fn de_ramp<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Ramp>, D::Error> {
    settings::parsed(d, parse_ramp).map(Some)
}

fn de_stall<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<(Duration, Duration)>, D::Error> {
    settings::parsed(d, parse_stall).map(Some)
}

impl Default for WorkloadArgs {
    fn default() -> Self {
        settings::clap_defaults()
    }
}

impl WorkloadArgs {
    settings::overlay_fields!(
        fields: rate, ramp, steps, step_duration, max_p99, search_start, warmup, instance,
        instances, inject_stall;
        nested:
    );

    /// The rate profile the flags ask for.
    pub fn rate_spec(&self) -> Result<RateSpec, WorkloadError> {
        if self.max_p99.is_some() && self.rate != Some(RateFlag::Max) {
            return Err(WorkloadError::MaxP99WithoutSearch);
        }
        if self.step_duration.is_some() && self.steps.is_empty() && self.rate != Some(RateFlag::Max)
        {
            return Err(WorkloadError::StepDurationAlone);
        }
        if let Some(r) = self.ramp {
            return Ok(RateSpec::Ramp {
                from: r.from,
                to: r.to,
                over: r.over,
            });
        }
        if !self.steps.is_empty() {
            if self.steps.iter().all(|r| *r == 0.0) {
                return Err(WorkloadError::NoStepAboveZero);
            }
            return Ok(RateSpec::Steps {
                rates: self.steps.clone(),
                step: self.step_duration.unwrap_or(Duration::from_secs(30)),
            });
        }
        Ok(match self.rate {
            None => RateSpec::Unlimited,
            Some(RateFlag::PerS(per_s)) => RateSpec::Fixed { per_s },
            Some(RateFlag::Max) => RateSpec::Max {
                start: self.search_start.max(1.0),
                step: self
                    .step_duration
                    .unwrap_or(Duration::from_secs(5))
                    .max(Duration::from_secs(2)),
                max_p99: self.max_p99,
            },
        })
    }

    /// `(instance, instances)`, from the flags or JOB_COMPLETION_INDEX.
    pub fn instance(&self) -> Result<(u32, u32), WorkloadError> {
        self.instance_with(std::env::var("JOB_COMPLETION_INDEX").ok().as_deref())
    }

    fn instance_with(&self, job_index: Option<&str>) -> Result<(u32, u32), WorkloadError> {
        if self.instances == 0 {
            return Err(WorkloadError::NoInstances);
        }
        let index = match (self.instance, job_index) {
            (Some(i), _) => i,
            (None, Some(v)) => v
                .trim()
                .parse()
                .map_err(|_| WorkloadError::JobIndex(v.into()))?,
            (None, None) => 0,
        };
        if index >= self.instances {
            return Err(WorkloadError::InstanceOutOfRange {
                index,
                instances: self.instances,
            });
        }
        Ok((index, self.instances))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        w: WorkloadArgs,
    }

    fn spec(args: &[&str]) -> Result<RateSpec, String> {
        let mut v = vec!["t"];
        v.extend_from_slice(args);
        T::try_parse_from(v)
            .map_err(|e| e.to_string())?
            .w
            .rate_spec()
            .map_err(|e| e.to_string())
    }

    #[test]
    fn rate_profiles_parse() {
        assert_eq!(spec(&[]).unwrap(), RateSpec::Unlimited);
        assert_eq!(
            spec(&["--rate", "200k"]).unwrap(),
            RateSpec::Fixed { per_s: 200_000.0 }
        );
        assert_eq!(
            spec(&["--ramp", "100k:1M:60s"]).unwrap(),
            RateSpec::Ramp {
                from: 100_000.0,
                to: 1_000_000.0,
                over: Duration::from_secs(60)
            }
        );
        assert_eq!(
            spec(&["--steps", "1k,2k", "--step-duration", "3s"]).unwrap(),
            RateSpec::Steps {
                rates: vec![1000.0, 2000.0],
                step: Duration::from_secs(3)
            }
        );
        assert_eq!(
            spec(&["--rate", "max", "--max-p99", "20ms"]).unwrap(),
            RateSpec::Max {
                start: 10_000.0,
                step: Duration::from_secs(5),
                max_p99: Some(Duration::from_millis(20))
            }
        );
    }

    #[test]
    fn rate_mistakes_are_explained() {
        assert_eq!(
            spec(&["--max-p99", "5ms"]).unwrap_err(),
            "--max-p99 bounds the --rate max search; add --rate max"
        );
        assert!(spec(&["--ramp", "1k:2k"])
            .unwrap_err()
            .contains("FROM:TO:DURATION"));
        assert!(spec(&["--rate", "0.5"])
            .unwrap_err()
            .contains("at least 1 record"));
        assert!(spec(&["--rate", "1k", "--ramp", "1k:2k:1s"]).is_err());
    }

    #[test]
    fn instances_come_from_flags_or_the_job_index() {
        let w = |args: &[&str]| {
            let mut v = vec!["t"];
            v.extend_from_slice(args);
            T::try_parse_from(v).unwrap().w
        };
        assert_eq!(w(&[]).instance_with(None).unwrap(), (0, 1));
        assert_eq!(
            w(&["--instances", "3"]).instance_with(Some("2")).unwrap(),
            (2, 3)
        );
        assert_eq!(
            w(&["--instances", "3", "--instance", "1"])
                .instance_with(Some("2"))
                .unwrap(),
            (1, 3)
        );
        assert_eq!(
            w(&["--instances", "3"])
                .instance_with(Some("3"))
                .unwrap_err()
                .to_string(),
            "instance 3 is out of range: --instances 3 numbers them 0 to 2"
        );
        assert!(w(&["--instances", "2"])
            .instance_with(Some("x"))
            .unwrap_err()
            .to_string()
            .contains("JOB_COMPLETION_INDEX"));
    }
}
