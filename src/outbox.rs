//! An engine with no store of its own: the hot path feeds it exactly as it feeds a store's
//! writer, and a shipping thread drains it in packets that carry their own run ids and key
//! names, so the process that receives them needs none of this process's numbering.
//!
//! A packet is `run_ids`, `keys` and `records`: 32 bytes per point (run index, key index,
//! value, timestamp, step; little-endian), the indexes into the packet's own lists.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use rustc_hash::FxHashMap;

use crate::error::{Error, Result};
use crate::interner::Interner;
use crate::runs::RunRegistry;
use crate::writer::{Config, Engine, MetricRecord, Msg};

pub const RECORD_BYTES: usize = 32;

/// Points in one packet at most: each packet is a call to another process, so they are
/// larger than a store's transactions.
const PACKET_RECORDS: usize = 100_000;

pub struct Packet {
    pub run_ids: Vec<Arc<str>>,
    pub keys: Vec<Arc<str>>,
    pub records: Vec<u8>,
    /// Callers of `Engine::flush` waiting for this packet to become durable.
    pub barriers: Vec<Sender<Result<()>>>,
}

impl Packet {
    pub fn len(&self) -> usize {
        self.records.len() / RECORD_BYTES
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Whether the receiver must make the packet durable before answering.
    pub fn durable(&self) -> bool {
        !self.barriers.is_empty()
    }

    /// Tells the callers waiting on this packet how its delivery went.
    pub fn settle(self, outcome: &Result<()>) {
        for barrier in self.barriers {
            let _ = barrier.send(outcome.clone());
        }
    }
}

/// Draining side of an outbox engine; owned by the one thread that ships its packets.
pub struct Outbox {
    receiver: Receiver<Msg>,
    runs: Arc<RunRegistry>,
    interner: Arc<Interner>,
    config: Config,
    pending: Vec<MetricRecord>,
    first_pending_at: Option<Instant>,
}

pub fn open(interner: Arc<Interner>, config: Config) -> (Engine, Outbox) {
    let (engine, receiver) = Engine::with_queue(config.queue_capacity);
    let outbox = Outbox {
        receiver,
        runs: engine.runs.clone(),
        interner,
        config,
        pending: Vec::new(),
        first_pending_at: None,
    };
    (engine, outbox)
}

/// What `Outbox::next_packet` found.
pub enum Drained {
    Packet(Packet),
    /// Nothing to ship within the wait; ask again.
    Idle,
    /// Every sender is gone and nothing is left.
    Closed,
}

impl Outbox {
    /// The next packet: when the oldest pending point has waited a flush interval, when a
    /// packet is full, or at once when someone waits for a flush. Waits at most `idle_wait`
    /// when there is nothing at all.
    pub fn next_packet(&mut self, idle_wait: Duration) -> Result<Drained> {
        let started = Instant::now();
        loop {
            let wait = match self.first_pending_at {
                Some(at) => {
                    (at + self.config.flush_interval).saturating_duration_since(Instant::now())
                }
                None => idle_wait.saturating_sub(started.elapsed()),
            };
            match self.receiver.recv_timeout(wait) {
                Ok(msg @ (Msg::Metric(_) | Msg::Block(_))) => {
                    self.push_points(msg);
                    while self.pending.len() < PACKET_RECORDS {
                        match self.receiver.try_recv() {
                            Ok(msg @ (Msg::Metric(_) | Msg::Block(_))) => self.push_points(msg),
                            Ok(Msg::Barrier { reply, .. }) => {
                                return self.pack(vec![reply]).map(Drained::Packet)
                            }
                            // Store operations never reach an outbox; dropping the job tells
                            // its caller the writer is gone instead of leaving it waiting.
                            Ok(Msg::Job(_)) => {}
                            // The funnel's receiver owns the runs' lifecycle.
                            Ok(Msg::Run(_)) => {}
                            Err(_) => break,
                        }
                    }
                    if self.pending.len() >= PACKET_RECORDS {
                        return self.pack(Vec::new()).map(Drained::Packet);
                    }
                }
                Ok(Msg::Barrier { reply, .. }) => {
                    return self.pack(vec![reply]).map(Drained::Packet)
                }
                Ok(Msg::Job(_)) | Ok(Msg::Run(_)) => {}
                Err(RecvTimeoutError::Timeout) => {
                    if !self.pending.is_empty() {
                        return self.pack(Vec::new()).map(Drained::Packet);
                    }
                    return Ok(Drained::Idle);
                }
                Err(RecvTimeoutError::Disconnected) => {
                    if self.pending.is_empty() {
                        return Ok(Drained::Closed);
                    }
                    return self.pack(Vec::new()).map(Drained::Packet);
                }
            }
        }
    }

    fn push(&mut self, record: MetricRecord) {
        self.first_pending_at.get_or_insert_with(Instant::now);
        self.pending.push(record);
    }

    fn push_points(&mut self, msg: Msg) {
        match msg {
            Msg::Metric(record) => self.push(record),
            Msg::Block(block) => {
                self.first_pending_at.get_or_insert_with(Instant::now);
                self.pending.extend(block);
            }
            _ => {}
        }
    }

    fn pack(&mut self, barriers: Vec<Sender<Result<()>>>) -> Result<Packet> {
        let records = std::mem::take(&mut self.pending);
        self.first_pending_at = None;
        let mut run_index: FxHashMap<u32, u32> = FxHashMap::default();
        let mut key_index: FxHashMap<u32, u32> = FxHashMap::default();
        let mut packet = Packet {
            run_ids: Vec::new(),
            keys: Vec::new(),
            records: Vec::with_capacity(records.len() * RECORD_BYTES),
            barriers,
        };
        for record in records {
            let run = match run_index.get(&record.run) {
                Some(&local) => local,
                None => {
                    let local = packet.run_ids.len() as u32;
                    packet.run_ids.push(self.runs.id(record.run)?);
                    run_index.insert(record.run, local);
                    local
                }
            };
            let key = *key_index.entry(record.key).or_insert_with(|| {
                packet.keys.push(self.interner.key(record.key));
                packet.keys.len() as u32 - 1
            });
            encode(&mut packet.records, &MetricRecord { run, key, ..record });
        }
        Ok(packet)
    }
}

pub fn encode(out: &mut Vec<u8>, record: &MetricRecord) {
    out.extend_from_slice(&record.run.to_le_bytes());
    out.extend_from_slice(&record.key.to_le_bytes());
    out.extend_from_slice(&record.value.to_le_bytes());
    out.extend_from_slice(&record.timestamp.to_le_bytes());
    out.extend_from_slice(&record.step.to_le_bytes());
}

/// Reads the points of a packet, with run and key indexes still the packet's own; refuses
/// anything malformed instead of trusting the sender.
pub fn decode(records: &[u8], run_count: usize, key_count: usize) -> Result<Vec<MetricRecord>> {
    if records.len() % RECORD_BYTES != 0 {
        return Err(Error::invalid(format!(
            "A metric packet must hold a multiple of {RECORD_BYTES} bytes, got {}",
            records.len()
        )));
    }
    let mut out = Vec::with_capacity(records.len() / RECORD_BYTES);
    for chunk in records.chunks_exact(RECORD_BYTES) {
        let u32_at = |at: usize| u32::from_le_bytes(chunk[at..at + 4].try_into().unwrap());
        let u64_at = |at: usize| u64::from_le_bytes(chunk[at..at + 8].try_into().unwrap());
        let record = MetricRecord {
            run: u32_at(0),
            key: u32_at(4),
            value: f64::from_bits(u64_at(8)),
            timestamp: u64_at(16) as i64,
            step: u64_at(24) as i64,
        };
        if record.run as usize >= run_count || record.key as usize >= key_count {
            return Err(Error::invalid(
                "A metric packet refers to a run or key it does not list",
            ));
        }
        out.push(record);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox(config: Config) -> (Engine, Outbox, Arc<Interner>) {
        let interner = Arc::new(Interner::default());
        let (engine, outbox) = open(interner.clone(), config);
        (engine, outbox, interner)
    }

    fn record(run: u32, key: u32, step: i64) -> MetricRecord {
        MetricRecord {
            run,
            key,
            value: step as f64 * 0.5,
            timestamp: 1_700_000_000_000 + step,
            step,
        }
    }

    #[test]
    fn packets_carry_their_own_names_and_round_trip() {
        let (engine, mut outbox, interner) = outbox(Config::default());
        let a = engine.runs.register("a".repeat(32).as_str(), true).index;
        let b = engine.runs.register("b".repeat(32).as_str(), true).index;
        let _unused = interner.intern_metric_key("unused").unwrap();
        let loss = interner.intern_metric_key("loss").unwrap();
        let acc = interner.intern_metric_key("acc").unwrap();
        let sent = [record(b, acc, 1), record(a, loss, 2), record(b, loss, 3)];
        for r in sent {
            engine.try_send_metric(r).ok().unwrap();
        }
        drop(engine);
        let Drained::Packet(packet) = outbox.next_packet(Duration::from_secs(5)).unwrap() else {
            panic!("expected a packet");
        };
        assert_eq!(packet.len(), 3);
        assert_eq!(&*packet.run_ids[0], "b".repeat(32));
        assert_eq!(&*packet.keys[0], "acc");
        assert_eq!(packet.keys.len(), 2, "only the keys the packet uses");
        let decoded = decode(&packet.records, packet.run_ids.len(), packet.keys.len()).unwrap();
        for (got, want) in decoded.iter().zip(sent) {
            assert_eq!(
                &*packet.run_ids[got.run as usize],
                &*engine_run_id(&outbox, want.run)
            );
            assert_eq!(packet.keys[got.key as usize], interner.key(want.key));
            assert_eq!(
                (got.value, got.timestamp, got.step),
                (want.value, want.timestamp, want.step)
            );
        }
        assert!(matches!(
            outbox.next_packet(Duration::from_millis(1)).unwrap(),
            Drained::Closed
        ));
    }

    fn engine_run_id(outbox: &Outbox, index: u32) -> Arc<str> {
        outbox.runs.id(index).unwrap()
    }

    #[test]
    fn a_flush_ships_at_once_and_waits_for_settlement() {
        let config = Config {
            flush_interval: Duration::from_secs(3600),
            ..Config::default()
        };
        let (engine, mut outbox, interner) = outbox(config);
        let run = engine.runs.register(&"c".repeat(32), true).index;
        let key = interner.intern_metric_key("m").unwrap();
        engine.try_send_metric(record(run, key, 7)).ok().unwrap();
        let engine = Arc::new(engine);
        let flusher = {
            let engine = engine.clone();
            std::thread::spawn(move || engine.flush(&mut || Ok(())))
        };
        let Drained::Packet(packet) = outbox.next_packet(Duration::from_secs(5)).unwrap() else {
            panic!("expected a packet");
        };
        assert!(packet.durable());
        assert_eq!(packet.len(), 1);
        packet.settle(&Err(Error::Unavailable("peer gone".into())));
        assert_eq!(
            flusher.join().unwrap(),
            Err(Error::Unavailable("peer gone".into()))
        );
    }

    #[test]
    fn malformed_packets_are_refused() {
        assert!(decode(&[0u8; 31], 1, 1).is_err());
        let mut bytes = Vec::new();
        encode(&mut bytes, &record(1, 0, 0));
        assert!(decode(&bytes, 1, 1).is_err());
        assert_eq!(decode(&bytes, 2, 1).unwrap().len(), 1);
    }
}
