//! The spool: every process appends what it queues for a store to a journal of its own
//! before the writer applies it, so a process killed outright (SIGKILL, the OOM killer)
//! or one that exits while its store is unreachable loses nothing that reached the journal.
//! The next process that opens the same store, or `fastflow.sync()`, replays what the dead
//! process did not commit and ends the runs it left running.
//!
//! A journal is a file of frames `[len u32][crc32 u32][payload]`, appended with plain
//! `write` calls (no fsync on the hot path: the page cache survives the process). Metric
//! frames carry explicit sequence numbers; commit frames say how many the store has taken,
//! so a replay skips what was committed (and metric rows are idempotent anyway). A torn last
//! frame (the process died inside a write) ends the replay of that file.
//!
//! A journal file is held with an exclusive `flock` for the life of its process; a replayer
//! that can take the lock knows the owner is gone.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::entities::now_millis;
use crate::interner::Interner;
use crate::outbox::{decode, encode, RECORD_BYTES};
use crate::runs::RunRegistry;
use crate::writer::{MetricRecord, Msg};

const MAGIC: &[u8] = b"fastflow-spool-1";
const HEADER: u8 = 1;
const KEY: u8 = 2;
const RUN: u8 = 3;
const METRICS: u8 = 4;
const COMMIT: u8 = 5;
const LIFECYCLE: u8 = 6;

/// A run's status as the process that owned it set it; `RUNNING` means it opened the run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEvent {
    pub run: u32,
    pub status: &'static str,
    pub end_time: i64,
}

pub const RUN_OPENED: &str = "RUNNING";

pub fn terminal_status(status: &str) -> Option<&'static str> {
    ["FINISHED", "FAILED", "KILLED"]
        .into_iter()
        .find(|s| *s == status)
}

/// Where journals of the store `store_key` live: `FASTFLOW_SPOOL_DIR`, else the user's
/// cache directory; `None` when `FASTFLOW_SPOOL=0` turns the spool off.
pub fn dir_for(store_key: &str) -> Option<PathBuf> {
    if std::env::var("FASTFLOW_SPOOL").is_ok_and(|v| v.trim() == "0") {
        return None;
    }
    let root = match std::env::var_os("FASTFLOW_SPOOL_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
            cache.join("fastflow").join("spool")
        }
    };
    Some(root.join(store_dir_name(store_key)))
}

/// A readable and collision-free directory name for a store: its last path segment and a
/// hash of the whole key.
fn store_dir_name(store_key: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in store_key.bytes() {
        hash ^= byte as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let tail: String = store_key
        .trim_end_matches('/')
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or("")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    format!("{tail}-{hash:016x}")
}

/// Size of a journal segment before the next one starts; `FASTFLOW_SPOOL_MAX_MB` bounds
/// two segments' worth.
fn segment_bytes() -> u64 {
    let mb = std::env::var("FASTFLOW_SPOOL_MAX_MB")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(256)
        .max(2);
    mb * (1 << 20) / 2
}

fn frame(out: &mut Vec<u8>, kind: u8, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    out.push(kind);
    body(out);
    let payload = &out[start + 8..];
    let len = payload.len() as u32;
    let crc = crc32fast::hash(payload);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

fn lock_exclusive(file: &File) -> io::Result<bool> {
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(error)
    }
}

struct Segment {
    path: PathBuf,
    file: File,
    /// Records up to this sequence number live in this segment or earlier ones.
    end_seq: u64,
}

/// This process's journal for one store: the spooler thread appends, the exit path reads
/// the counts and removes it once everything is delivered.
pub struct Journal {
    dir: PathBuf,
    stem: String,
    store: String,
    current: Segment,
    size: u64,
    segment_bytes: u64,
    sealed: Vec<Segment>,
    segments_opened: u32,
    keys_defined: Vec<bool>,
    runs_defined: Vec<bool>,
    /// Metric records appended so far (the next record's sequence number).
    pub seq: u64,
    /// The commit point last written.
    marked: u64,
    /// Ranges of records whose append failed (a full disk): not in the journal.
    pub failed: Vec<(u64, u64)>,
    pub last_error: Option<String>,
    buf: Vec<u8>,
}

impl Journal {
    pub fn create(dir: &Path, store: &str) -> io::Result<Journal> {
        fs::create_dir_all(dir)?;
        let stem = format!("{}-{:08x}", std::process::id(), rand_u32());
        let current = Self::open_segment(dir, &stem, 0, store)?;
        Ok(Journal {
            dir: dir.to_path_buf(),
            stem,
            store: store.to_string(),
            size: current.file.metadata()?.len(),
            current,
            segment_bytes: segment_bytes(),
            sealed: Vec::new(),
            segments_opened: 1,
            keys_defined: Vec::new(),
            runs_defined: Vec::new(),
            seq: 0,
            marked: 0,
            failed: Vec::new(),
            last_error: None,
            buf: Vec::new(),
        })
    }

    fn open_segment(dir: &Path, stem: &str, number: u32, store: &str) -> io::Result<Segment> {
        let path = dir.join(format!("{stem}-{number:04}.spool"));
        let mut file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)?;
        if let Err(error) = Self::start_segment(&mut file, store) {
            let _ = fs::remove_file(&path);
            return Err(error);
        }
        Ok(Segment {
            path,
            file,
            end_seq: 0,
        })
    }

    fn start_segment(file: &mut File, store: &str) -> io::Result<()> {
        lock_exclusive(file)?;
        let mut header = Vec::new();
        header.extend_from_slice(MAGIC);
        frame(&mut header, HEADER, |out| {
            out.extend_from_slice(&std::process::id().to_le_bytes());
            out.extend_from_slice(&now_millis().to_le_bytes());
            put_str(out, store);
        });
        file.write_all(&header)
    }

    pub fn paths(&self) -> Vec<PathBuf> {
        let mut all: Vec<PathBuf> = self.sealed.iter().map(|s| s.path.clone()).collect();
        all.push(self.current.path.clone());
        all
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Journals the records and run events of `msgs`; returns the sequence number after them.
    pub fn append(&mut self, msgs: &[Msg], interner: &Interner, runs: &RunRegistry) -> u64 {
        let first = self.seq;
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut records = Vec::new();
        for msg in msgs {
            match msg {
                Msg::Metric(record) => {
                    self.define(&mut buf, record.run, record.key, interner, runs);
                    encode(&mut records, record);
                }
                Msg::Block(block) => {
                    for record in block {
                        self.define(&mut buf, record.run, record.key, interner, runs);
                        encode(&mut records, record);
                    }
                }
                Msg::Run(event) => {
                    self.define_run(&mut buf, event.run, runs);
                    frame(&mut buf, LIFECYCLE, |out| {
                        out.extend_from_slice(&event.run.to_le_bytes());
                        out.extend_from_slice(&event.end_time.to_le_bytes());
                        put_str(out, event.status);
                    });
                }
                Msg::Job(_) | Msg::Barrier { .. } => {}
            }
        }
        let count = (records.len() / RECORD_BYTES) as u64;
        if count > 0 {
            frame(&mut buf, METRICS, |out| {
                out.extend_from_slice(&first.to_le_bytes());
                out.extend_from_slice(&records);
            });
        }
        self.seq += count;
        if !buf.is_empty() {
            self.write(&buf, first, self.seq);
        }
        self.buf = buf;
        self.seq
    }

    fn define(
        &mut self,
        buf: &mut Vec<u8>,
        run: u32,
        key: u32,
        interner: &Interner,
        runs: &RunRegistry,
    ) {
        if !self
            .keys_defined
            .get(key as usize)
            .copied()
            .unwrap_or(false)
        {
            if self.keys_defined.len() <= key as usize {
                self.keys_defined.resize(key as usize + 1, false);
            }
            self.keys_defined[key as usize] = true;
            let name = interner.key(key);
            frame(buf, KEY, |out| {
                out.extend_from_slice(&key.to_le_bytes());
                put_str(out, &name);
            });
        }
        self.define_run(buf, run, runs);
    }

    fn define_run(&mut self, buf: &mut Vec<u8>, run: u32, runs: &RunRegistry) {
        if self
            .runs_defined
            .get(run as usize)
            .copied()
            .unwrap_or(false)
        {
            return;
        }
        let Ok(run_id) = runs.id(run) else { return };
        if self.runs_defined.len() <= run as usize {
            self.runs_defined.resize(run as usize + 1, false);
        }
        self.runs_defined[run as usize] = true;
        frame(buf, RUN, |out| {
            out.extend_from_slice(&run.to_le_bytes());
            put_str(out, &run_id);
        });
    }

    fn write(&mut self, bytes: &[u8], first: u64, end: u64) {
        match self.current.file.write_all(bytes) {
            Ok(()) => {
                self.size += bytes.len() as u64;
                self.current.end_seq = end;
            }
            Err(error) => {
                if first < end {
                    self.failed.push((first, end));
                }
                self.last_error = Some(error.to_string());
                // A partial frame would end every later replay of this segment: cut it off
                // (which also frees the space a full disk needs), and define names again.
                let _ = self.current.file.set_len(self.size);
                self.definitions_lost();
            }
        }
    }

    fn definitions_lost(&mut self) {
        self.keys_defined.clear();
        self.runs_defined.clear();
    }

    fn rotate(&mut self) -> io::Result<()> {
        let number = self.segments_opened;
        self.segments_opened += 1;
        let next = Self::open_segment(&self.dir, &self.stem, number, &self.store)?;
        let mut old = std::mem::replace(&mut self.current, next);
        old.end_seq = self.seq;
        self.sealed.push(old);
        self.size = 0;
        self.definitions_lost();
        // The new segment's replay must know where the store stands.
        let marked = self.marked;
        self.marked = 0;
        self.mark(marked);
        Ok(())
    }

    /// Records that the store holds every record before `committed`; drops segments that
    /// hold nothing else and starts a new one when the current one is full.
    pub fn mark(&mut self, committed: u64) {
        if committed > self.marked {
            let mut buf = Vec::with_capacity(24);
            frame(&mut buf, COMMIT, |out| {
                out.extend_from_slice(&committed.to_le_bytes())
            });
            match self.current.file.write_all(&buf) {
                Ok(()) => {
                    self.size += buf.len() as u64;
                    self.marked = committed;
                }
                // Without the mark a replay repeats committed points, which are idempotent.
                Err(_) => {
                    let _ = self.current.file.set_len(self.size);
                }
            }
        }
        self.sealed.retain(|segment| {
            if segment.end_seq <= committed {
                let _ = fs::remove_file(&segment.path);
                false
            } else {
                true
            }
        });
        if self.size >= self.segment_bytes {
            if let Err(error) = self.rotate() {
                self.last_error = Some(error.to_string());
            }
        }
    }

    /// Records after `committed` that are not in the journal (their append failed).
    pub fn missing_after(&self, committed: u64) -> u64 {
        self.failed
            .iter()
            .map(|&(start, end)| end.saturating_sub(start.max(committed)))
            .sum()
    }

    pub fn sync(&self) -> io::Result<()> {
        for segment in self.sealed.iter().chain([&self.current]) {
            segment.file.sync_data()?;
        }
        Ok(())
    }

    /// Closes the files without dropping them: in a forked child, whose copy of this journal
    /// is never used again, so that the parent's lock ends with the parent.
    pub fn close_files(&mut self) {
        for segment in self.sealed.iter().chain([&self.current]) {
            // SAFETY: the descriptors are this journal's; it is leaked in the child and never
            // touches them again.
            unsafe { libc::close(segment.file.as_raw_fd()) };
        }
    }

    /// Removes every segment: the store holds all of it.
    pub fn remove(&mut self) {
        for segment in self.sealed.drain(..) {
            let _ = fs::remove_file(&segment.path);
        }
        let _ = fs::remove_file(&self.current.path);
        let _ = fs::remove_dir(&self.dir);
    }
}

fn rand_u32() -> u32 {
    let bytes = *uuid::Uuid::new_v4().as_bytes();
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// A point with its run id and key, as a replay hands it to the store.
pub type NamedPoint = (Arc<str>, Arc<str>, MetricRecord);

/// What a dead process's journal holds that its store may lack.
#[derive(Debug, Default)]
pub struct Recovered {
    pub store: String,
    pub pid: u32,
    /// Points not covered by a commit mark, with their run ids and keys.
    pub points: Vec<NamedPoint>,
    /// Run ids and the last status the process gave them, in order.
    pub runs: Vec<(Arc<str>, RunEvent)>,
    /// When the journal was last written: the time of death, near enough.
    pub last_write_ms: i64,
}

/// Reads a journal; a torn or corrupt frame ends it (everything before is kept).
pub fn read(path: &Path) -> io::Result<Recovered> {
    let mut file = File::open(path)?;
    let modified = file
        .metadata()?
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .unwrap_or_else(now_millis);
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let mut out = Recovered {
        last_write_ms: modified,
        ..Recovered::default()
    };
    if !bytes.starts_with(MAGIC) {
        return Ok(out);
    }
    let mut keys: Vec<Option<Arc<str>>> = Vec::new();
    let mut runs: Vec<Option<Arc<str>>> = Vec::new();
    let mut committed = 0u64;
    let mut blocks: Vec<(u64, Vec<NamedPoint>)> = Vec::new();
    let mut at = MAGIC.len();
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap());
        let Some(payload) = bytes.get(at + 8..at + 8 + len) else {
            break;
        };
        if len == 0 || crc32fast::hash(payload) != crc {
            break;
        }
        at += 8 + len;
        let mut cursor = Cursor {
            bytes: &payload[1..],
        };
        let parsed = (|| -> Option<()> {
            match payload[0] {
                HEADER => {
                    out.pid = cursor.u32()?;
                    cursor.u64()?;
                    out.store = cursor.str()?.to_string();
                }
                KEY => {
                    let id = cursor.u32()? as usize;
                    let name = cursor.str()?;
                    if keys.len() <= id {
                        keys.resize(id + 1, None);
                    }
                    keys[id] = Some(Arc::from(name));
                }
                RUN => {
                    let index = cursor.u32()? as usize;
                    let id = cursor.str()?;
                    if runs.len() <= index {
                        runs.resize(index + 1, None);
                    }
                    runs[index] = Some(Arc::from(id));
                }
                METRICS => {
                    let first = cursor.u64()?;
                    let records = decode(cursor.bytes, runs.len(), keys.len()).ok()?;
                    let mut named = Vec::with_capacity(records.len());
                    for record in records {
                        let run = runs[record.run as usize].clone()?;
                        let key = keys[record.key as usize].clone()?;
                        named.push((run, key, record));
                    }
                    blocks.push((first, named));
                }
                COMMIT => committed = committed.max(cursor.u64()?),
                LIFECYCLE => {
                    let run = cursor.u32()?;
                    let end_time = cursor.u64()? as i64;
                    let status = match cursor.str()? {
                        RUN_OPENED => RUN_OPENED,
                        other => terminal_status(other)?,
                    };
                    let id = runs.get(run as usize).cloned().flatten()?;
                    out.runs.push((
                        id,
                        RunEvent {
                            run,
                            status,
                            end_time,
                        },
                    ));
                }
                _ => {}
            }
            Some(())
        })();
        if parsed.is_none() {
            break;
        }
    }
    for (first, named) in blocks {
        let skip = committed.saturating_sub(first).min(named.len() as u64) as usize;
        out.points.extend(named.into_iter().skip(skip));
    }
    Ok(out)
}

struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (self.bytes.get(..n)?, self.bytes.get(n..)?);
        self.bytes = tail;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn str(&mut self) -> Option<&'a str> {
        let len = self.u32()? as usize;
        std::str::from_utf8(self.take(len)?).ok()
    }
}

/// The journal files in `dir`, in name order, each opened for reading (not locked).
fn journals(dir: &Path) -> Vec<(PathBuf, File)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "spool"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .filter_map(|path| {
            let file = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(&path)
                .ok()?;
            Some((path, file))
        })
        .collect()
}

/// Journals in `dir` whose processes are gone, each held locked so no other process
/// replays it at the same time. Journals of live processes (this one included) are locked
/// by their owners and skipped.
pub fn orphans(dir: &Path) -> Vec<(PathBuf, File)> {
    let mut found = Vec::new();
    for (path, file) in journals(dir) {
        if let Ok(true) = lock_exclusive(&file) {
            found.push((path, file));
        }
    }
    found
}

/// A journal in a store's spool, as `fastflow doctor` reports it.
#[derive(Debug, Clone)]
pub struct JournalSummary {
    pub path: PathBuf,
    /// Its process still runs (it holds the journal's lock); the rest are left to replay.
    pub live: bool,
    pub pid: u32,
    /// Points the store may lack (those after the last commit mark).
    pub points: usize,
    /// Runs the process opened and had not ended when it stopped writing.
    pub open_runs: Vec<String>,
    pub last_write_ms: i64,
}

/// The journals in `dir`, without replaying any: a dead process's journal is locked only
/// while it is read, so a store opened meanwhile still replays it.
pub fn survey(dir: &Path) -> Vec<JournalSummary> {
    let mut found = Vec::new();
    for (path, file) in journals(dir) {
        let live = !matches!(lock_exclusive(&file), Ok(true));
        let Ok(recovered) = read(&path) else {
            continue;
        };
        drop(file);
        let mut last: Vec<(&str, &str)> = Vec::new();
        for (run_id, event) in &recovered.runs {
            match last.iter_mut().find(|(id, _)| *id == &**run_id) {
                Some(slot) => slot.1 = event.status,
                None => last.push((run_id, event.status)),
            }
        }
        found.push(JournalSummary {
            live,
            pid: recovered.pid,
            points: recovered.points.len(),
            open_runs: last
                .into_iter()
                .filter(|(_, status)| *status == RUN_OPENED)
                .map(|(id, _)| id.to_string())
                .collect(),
            last_write_ms: recovered.last_write_ms,
            path,
        });
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(run: u32, key: u32, step: i64) -> MetricRecord {
        MetricRecord {
            run,
            key,
            value: step as f64,
            timestamp: 1_000 + step,
            step,
        }
    }

    #[test]
    fn a_journal_replays_what_was_not_committed() {
        let dir = tempfile::tempdir().unwrap();
        let interner = Interner::default();
        let runs = RunRegistry::default();
        let run = runs.register(&"a".repeat(32), true).index;
        let key = interner.intern_metric_key("loss").unwrap();
        let mut journal = Journal::create(dir.path(), "store").unwrap();
        let opened = Msg::Run(RunEvent {
            run,
            status: RUN_OPENED,
            end_time: 0,
        });
        journal.append(&[opened], &interner, &runs);
        let first: Vec<Msg> = (0..10).map(|s| Msg::Metric(record(run, key, s))).collect();
        assert_eq!(journal.append(&first, &interner, &runs), 10);
        journal.mark(6);
        let second: Vec<Msg> = (10..15).map(|s| Msg::Metric(record(run, key, s))).collect();
        journal.append(&second, &interner, &runs);
        let path = journal.paths().pop().unwrap();
        // A torn frame at the end, as a kill inside a write leaves it.
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&[9, 0, 0, 0, 1, 2])
            .unwrap();
        assert!(orphans(dir.path()).is_empty(), "the owner still holds it");
        let got = read(&path).unwrap();
        assert_eq!(got.store, "store");
        let steps: Vec<i64> = got.points.iter().map(|p| p.2.step).collect();
        assert_eq!(steps, (6..15).collect::<Vec<_>>());
        assert_eq!(&*got.points[0].1, "loss");
        assert_eq!(got.runs.len(), 1);
        assert_eq!(got.runs[0].1.status, RUN_OPENED);
        drop(journal);
        assert_eq!(orphans(dir.path()).len(), 1);
    }

    #[test]
    fn a_survey_tells_live_journals_from_dead_ones_and_leaves_both() {
        let dir = tempfile::tempdir().unwrap();
        let interner = Interner::default();
        let runs = RunRegistry::default();
        let open_run = runs.register(&"a".repeat(32), true).index;
        let ended_run = runs.register(&"b".repeat(32), true).index;
        let key = interner.intern_metric_key("loss").unwrap();
        let mut journal = Journal::create(dir.path(), "store").unwrap();
        let events: Vec<Msg> = [
            (open_run, RUN_OPENED),
            (ended_run, RUN_OPENED),
            (ended_run, "FINISHED"),
        ]
        .into_iter()
        .map(|(run, status)| {
            Msg::Run(RunEvent {
                run,
                status,
                end_time: 1,
            })
        })
        .collect();
        journal.append(&events, &interner, &runs);
        let points: Vec<Msg> = (0..8)
            .map(|s| Msg::Metric(record(open_run, key, s)))
            .collect();
        journal.append(&points, &interner, &runs);
        journal.mark(3);

        let live = survey(dir.path());
        assert_eq!(live.len(), 1);
        assert!(live[0].live);
        assert_eq!(live[0].pid, std::process::id());
        assert_eq!(live[0].points, 5);
        assert_eq!(live[0].open_runs, vec!["a".repeat(32)]);

        drop(journal);
        let dead = survey(dir.path());
        assert!(!dead[0].live);
        assert_eq!(dead[0].points, 5);
        // The survey took the lock only to read: the journal is there to replay.
        assert_eq!(orphans(dir.path()).len(), 1);
    }

    #[test]
    fn a_corrupt_frame_ends_the_replay() {
        let dir = tempfile::tempdir().unwrap();
        let interner = Interner::default();
        let runs = RunRegistry::default();
        let run = runs.register(&"b".repeat(32), true).index;
        let key = interner.intern_metric_key("m").unwrap();
        let mut journal = Journal::create(dir.path(), "s").unwrap();
        journal.append(&[Msg::Metric(record(run, key, 1))], &interner, &runs);
        journal.append(&[Msg::Metric(record(run, key, 2))], &interner, &runs);
        let path = journal.paths().pop().unwrap();
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        let got = read(&path).unwrap();
        assert_eq!(got.points.len(), 1);
    }

    #[test]
    fn committed_segments_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let interner = Interner::default();
        let runs = RunRegistry::default();
        let run = runs.register(&"c".repeat(32), true).index;
        let key = interner.intern_metric_key("m").unwrap();
        let mut journal = Journal::create(dir.path(), "s").unwrap();
        journal.segment_bytes = 4096;
        for step in 0..2000 {
            journal.append(&[Msg::Metric(record(run, key, step))], &interner, &runs);
            if step % 100 == 99 {
                journal.mark(step as u64 - 50);
            }
        }
        assert!(journal.paths().len() <= 3, "{:?}", journal.paths());
        // Every segment replays on its own: definitions are repeated after a rotation.
        let mut replayed = 0;
        for path in journal.paths() {
            replayed += read(&path).unwrap().points.len();
        }
        assert!(replayed >= 50, "{replayed}");
        journal.remove();
        assert!(!dir.path().exists() || fs::read_dir(dir.path()).unwrap().next().is_none());
    }
}
