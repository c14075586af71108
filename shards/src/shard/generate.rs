//! The generator loop: per record, choose the partition, seal its batch if
//! the record would overflow it, append key and value. It neither allocates
//! nor locks; sealing, sending and ack handling happen once per batch.

use super::send::{pump, seal_and_queue, Net};
use super::state::{Knobs, Part, Shared, RETRY_LIMIT_BYTES};
use crate::payload::{murmur2, Keys, ValueSource};
use crate::plan::SEQUENCE_HEADER;
use datastorm_engine::arena::WriteBuf;
use datastorm_engine::batch::{Compressor, RecordHeader};
use datastorm_engine::metrics::{record_batch_latency, ShardCounters};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Records generated between checks of the clock, the stop flag and lingers.
const CHUNK: u64 = 256;

/// The shortest sleep of a paced generator with nothing due (see its use).
/// Well above the default spin before parking (100 us), so that the
/// executor sleeps in the kernel for most of it, and well below the default
/// linger (5 ms), so that it adds little latency.
const PACE_TICK: Duration = Duration::from_millis(1);

pub(super) struct Generation<'a> {
    /// `--rate max`: the run's target rate, moved by the coordinator.
    pub rate_control: Option<Arc<AtomicU64>>,
    /// Testing aid: block the executor once, at this time, for this long.
    pub stall: Option<(Instant, Duration)>,
    pub headers: &'a [RecordHeader<'a>],
    /// Keys come from the value source (`--key field:NAME`).
    pub field_keys: bool,
    /// (instance, shard) for the sequence header, when it is on.
    pub sequence_header: Option<(u16, u16)>,
    pub limit: u64,
    pub deadline: Option<Instant>,
    pub stop: Arc<AtomicBool>,
}

pub(super) struct Sealer {
    pub compressor: Compressor,
    pub scratch: WriteBuf,
}

/// The generator loop. Per record: choose the partition, seal its batch if
/// the record would overflow it, append key and value.
#[allow(clippy::too_many_arguments)]
pub(super) async fn generate(
    gen: &Generation<'_>,
    knobs: &Knobs,
    shared: &Shared,
    parts: &mut [Part],
    net: &mut Net<'_>,
    sealer: &mut Sealer,
    values: &mut dyn ValueSource,
    keys: &mut Keys,
) {
    let keyed = keys.is_keyed();
    let field_keys = gen.field_keys;
    let paced = knobs.pacer.borrow().is_some();
    let n_parts = parts.len();
    let mut cur = 0usize;
    let mut sticky_bytes = 0usize;
    let mut seq = 0u64;
    let mut now = Instant::now();
    let mut now_ms = epoch_ms();
    let mut next_linger_check = now;
    let mut stall = gen.stall;
    let mut rate_bits = gen.rate_control.as_ref().map(|c| c.load(Relaxed));
    loop {
        if gen.stop.load(Relaxed) || shared.failed() || seq >= gen.limit {
            break;
        }
        if gen.deadline.is_some_and(|d| now >= d) {
            break;
        }
        if let Some((at, d)) = stall.filter(|(at, _)| now >= *at) {
            // Deliberately blocks the executor (tests of stall reporting).
            let _ = at;
            std::thread::sleep(d);
            stall = None;
            now = Instant::now();
        }
        if let (Some(ctl), Some(bits)) = (&gen.rate_control, rate_bits.as_mut()) {
            let b = ctl.load(Relaxed);
            if b != *bits {
                *bits = b;
                if let Some(p) = knobs.pacer.borrow_mut().as_mut() {
                    p.rebase(now, seq, f64::from_bits(b));
                }
            }
        }
        if shared.retry_bytes.get() > RETRY_LIMIT_BYTES {
            // A leader is unreachable and its batches pile up: wait for
            // them to drain instead of growing memory. Records due meanwhile
            // are generated late, and their latency shows it.
            pump(knobs, shared, parts, net).await;
            glommio::timer::sleep(Duration::from_millis(10)).await;
            now = Instant::now();
            continue;
        }
        let mut budget = CHUNK.min(gen.limit - seq);
        if paced {
            let (due, next) = {
                let p = knobs.pacer.borrow();
                let p = p.as_ref().expect("paced");
                (p.due(now).min(gen.limit), p.intended(seq))
            };
            if due <= seq {
                pump(knobs, shared, parts, net).await;
                linger_check(now, knobs, shared, parts, net, sealer).await;
                let mut wake = next;
                if let Some(d) = gen.deadline {
                    wake = wake.min(d);
                }
                if let Some(l) = earliest_linger(parts, knobs.linger) {
                    wake = wake.min(l);
                }
                // Sleep at least PACE_TICK even when the next record is due
                // sooner: at 200k records/s the next one is 5 us away, and
                // yielding until then kept the executor busy (a whole core,
                // 10 CPU s in a 10 s run) for about a tenth of a core's work. After the tick the records due
                // meanwhile go out together; each is timed from its
                // intended send time, so the wait shows in its latency.
                let wait = wake
                    .saturating_duration_since(Instant::now())
                    .clamp(PACE_TICK, Duration::from_millis(100));
                glommio::timer::sleep(wait).await;
                now = Instant::now();
                now_ms = epoch_ms();
                continue;
            }
            budget = budget.min(due - seq);
        }

        let chunk_start = seq;
        for _ in 0..budget {
            let record = values.record(seq);
            let value = record.value;
            let key = if field_keys {
                record.key
            } else {
                keys.key(seq)
            };
            let mut pi = match key {
                Some(k) if keyed => (murmur2(k) & 0x7fff_ffff) as usize % n_parts,
                _ => cur,
            };
            if parts[pi].dead {
                if keyed && key.is_some() {
                    // Its partition stopped on an error: the record is lost,
                    // and counted so.
                    ShardCounters::add(&shared.counters.records_failed, 1);
                    seq += 1;
                    continue;
                }
                match (1..=n_parts)
                    .map(|d| (cur + d) % n_parts)
                    .find(|&i| !parts[i].dead)
                {
                    Some(alive) => {
                        cur = alive;
                        pi = alive;
                        sticky_bytes = 0;
                    }
                    None => return,
                }
            }
            let need = value.len() + key.map_or(0, <[u8]>::len) + 24;
            if !parts[pi].builder.is_empty()
                && parts[pi].builder.uncompressed_size() + need > knobs.batch_size
            {
                seal_and_queue(pi, knobs, shared, parts, net, sealer).await;
                if shared.failed() {
                    return;
                }
                if !keyed {
                    cur = (cur + 1) % n_parts;
                    pi = cur;
                    sticky_bytes = 0;
                }
            }
            let part = &mut parts[pi];
            if part.builder.is_empty() {
                // Paced: latency counts from the record's intended send time.
                part.first = match knobs.pacer.borrow().as_ref() {
                    Some(p) => p.intended(seq),
                    None => now,
                };
                part.first_seq = seq;
                part.payload_bytes = 0;
            }
            part.last = now;
            part.last_seq = seq;
            part.payload_bytes += need as u64 - 24;
            if !keyed {
                // Unkeyed records stick to one partition for a batch's worth
                // of bytes, then move on (Kafka's uniform sticky partitioner,
                // KIP-794): lingers seal batches before they fill, so
                // switching only on a full batch would starve partitions at
                // low rates.
                sticky_bytes += need;
                if sticky_bytes >= knobs.batch_size {
                    cur = (cur + 1) % n_parts;
                    sticky_bytes = 0;
                }
            }
            match gen.sequence_header {
                None => part.builder.append(now_ms, key, value, gen.headers),
                Some((instance, shard)) => {
                    let mut v = [0u8; 64];
                    let n = sequence_header_value(&mut v, instance, shard, part.id, part.next_seq);
                    let extra = RecordHeader {
                        key: SEQUENCE_HEADER.as_bytes(),
                        value: &v[..n],
                    };
                    part.builder
                        .append_with(now_ms, key, value, gen.headers, Some(extra));
                }
            }
            // Every record counts: retries are ordered and acks recorded by
            // this per-partition sequence, with or without the header.
            part.next_seq += 1;
            seq += 1;
        }
        if paced && seq > chunk_start {
            record_send_delay(knobs, shared, now, chunk_start, seq - 1);
        }

        now = Instant::now();
        if now >= next_linger_check {
            now_ms = epoch_ms();
            linger_check(now, knobs, shared, parts, net, sealer).await;
            next_linger_check = now + Duration::from_micros(500);
        }
        pump(knobs, shared, parts, net).await;
        glommio::yield_if_needed().await;
    }
}

/// Send delay of records `first..=last`, written at `now`: how late the
/// generator was against their intended times. Once per chunk.
fn record_send_delay(knobs: &Knobs, shared: &Shared, now: Instant, first: u64, last: u64) {
    let p = knobs.pacer.borrow();
    let Some(p) = p.as_ref() else { return };
    let d_first = now.saturating_duration_since(p.intended(first)).as_micros() as u64;
    let d_last = now.saturating_duration_since(p.intended(last)).as_micros() as u64;
    let n = last - first + 1;
    record_batch_latency(
        &mut shared.send_delay_interval.borrow_mut(),
        d_first,
        d_last,
        n,
    );
    if shared.measuring(now) {
        record_batch_latency(&mut shared.send_delay.borrow_mut(), d_first, d_last, n);
    }
}

/// Writes `1/INSTANCE/SHARD/PARTITION/SEQUENCE` in ASCII (readable by any
/// consumer tool) into `out` and returns its length. No allocation.
pub(super) fn sequence_header_value(
    out: &mut [u8; 64],
    instance: u16,
    shard: u16,
    partition: i32,
    seq: u64,
) -> usize {
    fn put(out: &mut [u8; 64], pos: usize, n: u64) -> usize {
        let mut tmp = [0u8; 20];
        let digits = crate::payload::decimal(n, &mut tmp);
        out[pos..pos + digits.len()].copy_from_slice(digits);
        pos + digits.len()
    }
    out[0] = b'1';
    let mut pos = 1;
    for n in [
        u64::from(instance),
        u64::from(shard),
        partition.max(0) as u64,
        seq,
    ] {
        out[pos] = b'/';
        pos = put(out, pos + 1, n);
    }
    pos
}

fn epoch_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn earliest_linger(parts: &[Part], linger: Duration) -> Option<Instant> {
    parts
        .iter()
        .filter(|p| !p.builder.is_empty() && !p.queued)
        .map(|p| p.first + linger)
        .min()
}

/// Seals batches whose first record has waited `linger`.
async fn linger_check(
    now: Instant,
    knobs: &Knobs,
    shared: &Shared,
    parts: &mut [Part],
    net: &mut Net<'_>,
    sealer: &mut Sealer,
) {
    for i in 0..parts.len() {
        let p = &parts[i];
        if !p.builder.is_empty() && now.saturating_duration_since(p.first) >= knobs.linger {
            seal_and_queue(i, knobs, shared, parts, net, sealer).await;
        }
    }
}
