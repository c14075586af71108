//! Engine knobs of `produce`: the shards' glommio executors and the broker
//! sockets. Every one is recorded in the report (`config.executor`,
//! `config.socket`) and can be swept (`datastorm sweep --ring-depth 64,256`).

use super::settings;
use crate::units;
use clap::{ArgAction, Args};
use datastorm_engine::conn::SocketOptions;
use datastorm_engine::runtime::ExecutorTuning;
use std::time::Duration;

#[derive(Args, Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
#[command(next_help_heading = "Engine knobs (see docs/tuning.md)")]
pub struct KnobArgs {
    /// io_uring submission queue entries per shard executor ring. More lets
    /// a shard queue more socket operations per io_uring_enter.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=32768))]
    #[serde(deserialize_with = "de_ring_depth")]
    pub ring_depth: u32,
    /// How long an idle shard polls before parking in the kernel: longer
    /// costs CPU while idle, shorter adds a wake-up to acks that arrive
    /// after a quiet moment.
    #[arg(long, default_value = "100us", value_parser = units::parse_duration, value_name = "DURATION")]
    #[serde(deserialize_with = "settings::duration")]
    pub spin_before_park: Duration,
    /// Time slice after which the generator yields so the executor can
    /// poll io_uring (ack readers, timers): shorter for latency, longer for
    /// throughput.
    #[arg(long, default_value = "500us", value_parser = parse_preempt, value_name = "DURATION")]
    #[serde(deserialize_with = "de_preempt")]
    pub preempt_timer: Duration,
    /// TCP_NODELAY on broker connections (true or false).
    #[arg(long, default_value_t = true, action = ArgAction::Set, value_name = "BOOL")]
    pub nodelay: bool,
    /// SO_SNDBUF of broker connections, e.g. 4MiB (the kernel doubles it and
    /// caps it at net.core.wmem_max). Default: autotuned by net.ipv4.tcp_wmem.
    #[arg(long, value_parser = units::parse_bytes, value_name = "BYTES")]
    #[serde(deserialize_with = "settings::some_bytes")]
    pub socket_send_buffer: Option<usize>,
    /// SO_RCVBUF of broker connections (capped at net.core.rmem_max).
    /// Default: autotuned by net.ipv4.tcp_rmem.
    #[arg(long, value_parser = units::parse_bytes, value_name = "BYTES")]
    #[serde(deserialize_with = "settings::some_bytes")]
    pub socket_receive_buffer: Option<usize>,
    /// SO_BUSY_POLL on broker connections, e.g. 50us: busy-wait in the
    /// receive path for up to this long (NIC drivers with busy polling;
    /// above net.core.busy_read needs CAP_NET_ADMIN).
    #[arg(long, value_parser = parse_busy_poll, value_name = "DURATION")]
    #[serde(deserialize_with = "de_busy_poll")]
    pub busy_poll: Option<Duration>,
    /// Connections each shard opens to each partition leader. A shard's
    /// partitions on one broker are spread over them (partition id modulo
    /// N, so a partition's batches stay on one connection, in order), each
    /// with its own --max-in-flight requests.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64), value_name = "N")]
    #[serde(deserialize_with = "de_connections")]
    pub connections_per_broker: u32,
}

/// A knob value out of its range, with the text as given.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KnobError {
    #[error(transparent)]
    Unit(#[from] units::UnitError),
    #[error("'{0}': the preemption timer takes 10us to 1s")]
    Preempt(String),
    #[error("'{0}': busy polling takes at most 1s (it is usually 50us)")]
    BusyPoll(String),
    #[error("{text} is not in {min}..={max}")]
    OutOfRange { text: String, min: u32, max: u32 },
}

fn parse_preempt(s: &str) -> Result<Duration, KnobError> {
    let d = units::parse_duration(s)?;
    if d < Duration::from_micros(10) || d > Duration::from_secs(1) {
        return Err(KnobError::Preempt(s.into()));
    }
    Ok(d)
}

fn parse_busy_poll(s: &str) -> Result<Duration, KnobError> {
    let d = units::parse_duration(s)?;
    if d > Duration::from_secs(1) {
        return Err(KnobError::BusyPoll(s.into()));
    }
    Ok(d)
}

/// A whole number in `range`, as clap's ranged parsers check it.
fn in_range(s: &str, range: std::ops::RangeInclusive<u32>) -> Result<u32, KnobError> {
    match s.trim().parse::<u32>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(KnobError::OutOfRange {
            text: s.into(),
            min: *range.start(),
            max: *range.end(),
        }),
    }
}

fn de_ring_depth<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    settings::parsed(d, |s| in_range(s, 1..=32768))
}

fn de_connections<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    settings::parsed(d, |s| in_range(s, 1..=64))
}

fn de_preempt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    settings::parsed(d, parse_preempt)
}

fn de_busy_poll<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    settings::parsed(d, parse_busy_poll).map(Some)
}

impl Default for KnobArgs {
    fn default() -> Self {
        settings::clap_defaults()
    }
}

impl KnobArgs {
    settings::overlay_fields!(
        fields: ring_depth, spin_before_park, preempt_timer, nodelay, socket_send_buffer,
        socket_receive_buffer, busy_poll, connections_per_broker;
        nested:
    );

    pub fn executor(&self) -> ExecutorTuning {
        ExecutorTuning {
            ring_depth: self.ring_depth as usize,
            spin_before_park: self.spin_before_park,
            preempt_timer: self.preempt_timer,
        }
    }

    pub fn socket(&self) -> SocketOptions {
        SocketOptions {
            nodelay: self.nodelay,
            send_buffer: self.socket_send_buffer,
            receive_buffer: self.socket_receive_buffer,
            busy_poll_us: self
                .busy_poll
                .map(|d| u32::try_from(d.as_micros()).unwrap_or(u32::MAX)),
        }
    }

    /// Notes for settings the kernel will quietly cap: a socket buffer over
    /// net.core.wmem_max/rmem_max gets the cap, not what was asked.
    pub fn capped_by_host(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (asked, sysctl, flag) in [
            (
                self.socket_send_buffer,
                "net.core.wmem_max",
                "--socket-send-buffer",
            ),
            (
                self.socket_receive_buffer,
                "net.core.rmem_max",
                "--socket-receive-buffer",
            ),
        ] {
            let (Some(asked), Some(max)) = (
                asked,
                crate::tune::probe::sysctl(sysctl).and_then(|v| v.parse::<usize>().ok()),
            ) else {
                continue;
            };
            if asked > max {
                out.push(format!(
                    "{flag} {asked} is above {sysctl} = {max}, so the kernel caps it at {max} \
                     (`tuning/apply throughput` raises the limit)"
                ));
            }
        }
        out
    }
}
