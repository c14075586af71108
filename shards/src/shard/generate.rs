//! The generator loop: per record, choose the partition, seal its batch if
//! the record would overflow it, append key and value. It neither allocates
//! nor locks; sealing, sending and ack handling happen once per batch.

use super::state::RETRY_LIMIT_BYTES;
use super::task::StreamTask;
use crate::e2e::{self, UnixClock};
use crate::payload::{murmur2, Keys, Record, ValueSource};
use crate::plan::{E2E_HEADER, SEQUENCE_HEADER};

const EMPTY_HEADER: RecordHeader<'static> = RecordHeader {
    key: b"",
    value: b"",
};
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

/// What ends or steers generation, read once per chunk.
pub(super) struct Limits {
    /// `--rate max`: the run's target rate, moved by the coordinator.
    pub rate_control: Option<Arc<AtomicU64>>,
    /// Testing aid: block the executor once, at this time, for this long.
    pub stall: Option<(Instant, Duration)>,
    /// This stream's share of `--count`.
    pub limit: u64,
    pub deadline: Option<Instant>,
    pub stop: Arc<AtomicBool>,
}

/// Where records come from.
pub(super) struct Input<'a> {
    pub values: Box<dyn ValueSource>,
    pub keys: Keys,
    pub form: RecordForm<'a>,
}

/// What every record carries besides its key and value.
pub(super) struct RecordForm<'a> {
    pub headers: &'a [RecordHeader<'a>],
    /// Records have keys (and keyed records go to their key's partition).
    pub keyed: bool,
    /// Keys come from the value source (`--key field:NAME`).
    pub field_keys: bool,
    /// (instance, shard) for the sequence header, when it is on.
    pub sequence_header: Option<(u16, u16)>,
    /// The end-to-end stamp, when it is on: this host's id and the clock
    /// that turns intended send times into wall-clock microseconds.
    pub e2e: Option<(u32, UnixClock)>,
}

pub(super) struct Sealer {
    pub compressor: Compressor,
    pub scratch: WriteBuf,
}

/// Where generation stands.
struct Cursor {
    /// The next record's number in the stream's share.
    seq: u64,
    /// Unkeyed records: the partition they stick to, and the bytes written
    /// to it since they moved there.
    cur: usize,
    sticky_bytes: usize,
    now: Instant,
    now_ms: i64,
}

impl Cursor {
    /// Unkeyed records move on to the next partition.
    fn next_partition(&mut self, n_parts: usize) {
        self.cur = (self.cur + 1) % n_parts;
        self.sticky_bytes = 0;
    }
}

/// Where a record goes.
enum Target {
    Part(usize),
    /// Its key's partition stopped on an error: the record is lost.
    Lost,
    /// Every partition stopped.
    Nowhere,
}

impl StreamTask {
    /// The generator loop: chunks of records, as the pace allows, with
    /// sealing, sending and connection upkeep between them, until the
    /// count, the deadline, a stop or a failure ends it.
    pub async fn generate(&mut self, input: &mut Input<'_>) {
        let mut at = Cursor {
            seq: 0,
            cur: 0,
            sticky_bytes: 0,
            now: Instant::now(),
            now_ms: epoch_ms(),
        };
        let mut next_linger_check = at.now;
        let mut rate_bits = self.limits.rate_control.as_ref().map(|c| c.load(Relaxed));
        loop {
            if self.limits.stop.load(Relaxed) || self.books.failed() || at.seq >= self.limits.limit
            {
                break;
            }
            if self.limits.deadline.is_some_and(|d| at.now >= d) {
                break;
            }
            self.stall_if_asked(&mut at);
            self.follow_rate_control(&mut rate_bits, &at);
            if self.books.retry.borrow().bytes() > RETRY_LIMIT_BYTES {
                // A leader is unreachable and its batches pile up: wait for
                // them to drain instead of growing memory. Records due
                // meanwhile are generated late, and their latency shows it.
                self.pump().await;
                glommio::timer::sleep(Duration::from_millis(10)).await;
                at.now = Instant::now();
                continue;
            }
            let mut budget = CHUNK.min(self.limits.limit - at.seq);
            if let Some(p) = &self.pacer {
                let (due, next) = (p.due(at.now).min(self.limits.limit), p.intended(at.seq));
                if due <= at.seq {
                    self.wait_for_pace(next, &mut at).await;
                    continue;
                }
                budget = budget.min(due - at.seq);
            }
            let chunk_start = at.seq;
            if !self.chunk(input, &mut at, budget).await {
                return;
            }
            if self.pacer.is_some() && at.seq > chunk_start {
                self.record_send_delay(at.now, chunk_start, at.seq - 1);
            }
            at.now = Instant::now();
            if at.now >= next_linger_check {
                at.now_ms = epoch_ms();
                self.linger_check(at.now).await;
                next_linger_check = at.now + Duration::from_micros(500);
            }
            self.pump().await;
            glommio::yield_if_needed().await;
        }
    }

    /// The per-record loop: `budget` records, each to its partition's open
    /// batch, sealing a batch the record would overflow. Neither allocates
    /// nor locks (values, keys and headers are written in place; sealing
    /// and sending happen once per batch). False when generation must end.
    async fn chunk(&mut self, input: &mut Input<'_>, at: &mut Cursor, budget: u64) -> bool {
        let form = &input.form;
        let keyed = form.keyed;
        for _ in 0..budget {
            let record = input.values.record(at.seq);
            let key = if form.field_keys {
                record.key
            } else {
                input.keys.key(at.seq)
            };
            let mut pi = match self.target(key, keyed, at) {
                Target::Part(pi) => pi,
                Target::Lost => {
                    ShardCounters::add(&self.books.counters.records_failed, 1);
                    at.seq += 1;
                    continue;
                }
                Target::Nowhere => return false,
            };
            let need = record.value.len() + key.map_or(0, <[u8]>::len) + 24;
            let builder = &self.parts[pi].builder;
            if !builder.is_empty() && builder.uncompressed_size() + need > self.knobs.batch_size {
                self.seal(pi).await;
                if self.books.failed() {
                    return false;
                }
                if !keyed {
                    at.next_partition(self.parts.len());
                    pi = at.cur;
                }
            }
            let value = record.value;
            self.append(pi, Record { key, value }, form, at);
        }
        true
    }

    /// The partition of a record with `key`: its key's, or (unkeyed) the
    /// one records stick to, skipping stopped partitions.
    #[inline]
    fn target(&self, key: Option<&[u8]>, keyed: bool, at: &mut Cursor) -> Target {
        let n_parts = self.parts.len();
        let pi = match key {
            Some(k) if keyed => (murmur2(k) & 0x7fff_ffff) as usize % n_parts,
            _ => at.cur,
        };
        if !self.parts[pi].dead {
            return Target::Part(pi);
        }
        if keyed && key.is_some() {
            return Target::Lost;
        }
        match (1..=n_parts)
            .map(|d| (at.cur + d) % n_parts)
            .find(|&i| !self.parts[i].dead)
        {
            Some(alive) => {
                at.cur = alive;
                at.sticky_bytes = 0;
                Target::Part(alive)
            }
            None => Target::Nowhere,
        }
    }

    /// Appends one record to part `pi`'s open batch.
    #[inline]
    fn append(&mut self, pi: usize, record: Record<'_>, form: &RecordForm<'_>, at: &mut Cursor) {
        let Record { key, value } = record;
        let need = value.len() + key.map_or(0, <[u8]>::len) + 24;
        let n_parts = self.parts.len();
        let part = &mut self.parts[pi];
        if part.builder.is_empty() {
            // Paced: latency counts from the record's intended send time.
            part.first = match &self.pacer {
                Some(p) => p.intended(at.seq),
                None => at.now,
            };
            part.first_seq = at.seq;
            part.payload_bytes = 0;
        }
        part.last = at.now;
        part.last_seq = at.seq;
        part.payload_bytes += need as u64 - 24;
        if !form.keyed {
            // Unkeyed records stick to one partition for a batch's worth of
            // bytes, then move on (Kafka's uniform sticky partitioner,
            // KIP-794): lingers seal batches before they fill, so switching
            // only on a full batch would starve partitions at low rates.
            at.sticky_bytes += need;
            if at.sticky_bytes >= self.knobs.batch_size {
                at.next_partition(n_parts);
            }
        }
        if form.sequence_header.is_none() && form.e2e.is_none() {
            part.builder.append(at.now_ms, key, value, form.headers);
        } else {
            // Paced: the intended send time, as latency counts it.
            let intended = match (&form.e2e, &self.pacer) {
                (Some(_), Some(p)) => p.intended(at.seq),
                _ => at.now,
            };
            append_stamped(part, at.now_ms, Record { key, value }, form, intended);
        }
        // Every record counts: retries are ordered and acks recorded by
        // this per-partition sequence, with or without the header.
        part.next_seq += 1;
        at.seq += 1;
    }

    /// Paced, nothing due: sends what is waiting, seals lingering batches,
    /// and sleeps until the next record (or linger, or the deadline) is due.
    async fn wait_for_pace(&mut self, next: Instant, at: &mut Cursor) {
        self.pump().await;
        self.linger_check(at.now).await;
        let mut wake = next;
        if let Some(d) = self.limits.deadline {
            wake = wake.min(d);
        }
        if let Some(l) = self.earliest_linger() {
            wake = wake.min(l);
        }
        // Sleep at least PACE_TICK even when the next record is due sooner:
        // at 200k records/s the next one is 5 us away, and yielding until
        // then kept the executor busy (a whole core) for about a tenth of a
        // core's work. After the tick the records due meanwhile go out
        // together; each is timed from its intended send time, so the wait
        // shows in its latency.
        let wait = wake
            .saturating_duration_since(Instant::now())
            .clamp(PACE_TICK, Duration::from_millis(100));
        glommio::timer::sleep(wait).await;
        at.now = Instant::now();
        at.now_ms = epoch_ms();
    }

    /// Testing aid (`inject_stall`): deliberately blocks the executor once.
    fn stall_if_asked(&mut self, at: &mut Cursor) {
        if let Some((_, d)) = self.limits.stall.filter(|(when, _)| at.now >= *when) {
            std::thread::sleep(d);
            self.limits.stall = None;
            at.now = Instant::now();
        }
    }

    /// `--rate max`: rebases the pacer when the coordinator moved the target.
    fn follow_rate_control(&mut self, bits: &mut Option<u64>, at: &Cursor) {
        let (Some(ctl), Some(bits)) = (&self.limits.rate_control, bits.as_mut()) else {
            return;
        };
        let b = ctl.load(Relaxed);
        if b != *bits {
            *bits = b;
            if let Some(p) = self.pacer.as_mut() {
                p.rebase(at.now, at.seq, f64::from_bits(b));
            }
        }
    }

    /// Send delay of records `first..=last`, written at `now`: how late the
    /// generator was against their intended times. Once per chunk.
    fn record_send_delay(&self, now: Instant, first: u64, last: u64) {
        let Some(p) = &self.pacer else { return };
        let d_first = now.saturating_duration_since(p.intended(first)).as_micros() as u64;
        let d_last = now.saturating_duration_since(p.intended(last)).as_micros() as u64;
        let n = last - first + 1;
        let books = &self.books;
        record_batch_latency(
            &mut books.send_delay_interval.borrow_mut(),
            d_first,
            d_last,
            n,
        );
        if books.measuring(now) {
            record_batch_latency(&mut books.send_delay.borrow_mut(), d_first, d_last, n);
        }
    }

    fn earliest_linger(&self) -> Option<Instant> {
        self.parts
            .iter()
            .filter(|p| !p.builder.is_empty() && !p.queued)
            .map(|p| p.first + self.knobs.linger)
            .min()
    }

    /// Seals batches whose first record has waited `linger`.
    async fn linger_check(&mut self, now: Instant) {
        for i in 0..self.parts.len() {
            let p = &self.parts[i];
            if !p.builder.is_empty() && now.saturating_duration_since(p.first) >= self.knobs.linger
            {
                self.seal(i).await;
            }
        }
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

/// Appends a record with its per-record headers (the sequence header, the
/// end-to-end stamp), built on the stack: only runs that asked for them
/// pay for the buffers.
fn append_stamped(
    part: &mut super::state::Part,
    now_ms: i64,
    record: Record<'_>,
    form: &RecordForm<'_>,
    intended: Instant,
) {
    let mut seq = [0u8; 64];
    let mut extra = [EMPTY_HEADER; 2];
    let mut n_extra = 0;
    if let Some((instance, shard)) = form.sequence_header {
        let n = sequence_header_value(&mut seq, instance, shard, part.id, part.next_seq);
        extra[0] = RecordHeader {
            key: SEQUENCE_HEADER.as_bytes(),
            value: &seq[..n],
        };
        n_extra = 1;
    }
    let stamp;
    if let Some((origin, clock)) = &form.e2e {
        stamp = e2e::encode(clock.unix_us(intended), *origin);
        extra[n_extra] = RecordHeader {
            key: E2E_HEADER.as_bytes(),
            value: &stamp,
        };
        n_extra += 1;
    }
    part.builder.append_with(
        now_ms,
        record.key,
        record.value,
        form.headers,
        &extra[..n_extra],
    );
}
