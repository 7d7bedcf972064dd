//! Access-log lines to stdout, stderr or a file, written off the request path.
//!
//! The request path renders a line and offers it to a bounded queue (never waiting); a
//! writer thread takes what is queued in batches and writes each batch with one flush.
//! Writes to files and pipes block, so they get a thread of their own rather than a
//! runtime worker. When the queue is full the line is dropped and counted: a slow disk
//! or a stuck stdout reader must not slow requests. The thread ends once the config that
//! created the writer is gone (all senders dropped) and the queue is drained.

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};

use weft_api::LogSink;

use super::LogStats;

/// Lines queued per writer before new ones are dropped.
pub const QUEUE_LINES: usize = 8192;
/// Lines written per flush at most.
const BATCH: usize = 512;

/// Where a writer thread puts its lines.
pub enum Output {
    Stdout,
    Stderr,
    File(String),
    /// Tests: collect the lines.
    #[cfg(test)]
    Memory(Arc<std::sync::Mutex<Vec<String>>>),
}

impl Output {
    pub fn of(sink: &LogSink) -> Option<Output> {
        match sink {
            LogSink::Stdout => Some(Output::Stdout),
            LogSink::Stderr => Some(Output::Stderr),
            LogSink::File { path } => Some(Output::File(path.clone())),
            LogSink::Otlp { .. } => None,
        }
    }
}

/// The request path's end of a writer.
#[derive(Clone)]
pub struct LineWriter {
    tx: SyncSender<String>,
    stats: Arc<LogStats>,
}

impl LineWriter {
    /// Starts a writer thread for `out` with room for `capacity` queued lines.
    pub fn start(
        out: Output,
        capacity: usize,
        stats: Arc<LogStats>,
    ) -> std::io::Result<LineWriter> {
        let (tx, rx) = sync_channel::<String>(capacity);
        let thread_stats = stats.clone();
        std::thread::Builder::new()
            .name("weft-access-log".into())
            .spawn(move || run(out, rx, &thread_stats))?;
        Ok(LineWriter { tx, stats })
    }

    /// Queues a line without waiting; a full queue drops it (and counts the drop).
    pub fn offer(&self, line: String) {
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn run(out: Output, rx: Receiver<String>, stats: &LogStats) {
    let mut sink: Box<dyn Write> = match &out {
        Output::Stdout => Box::new(std::io::stdout()),
        Output::Stderr => Box::new(std::io::stderr()),
        Output::File(path) => match OpenOptions::new().create(true).append(true).open(path) {
            Ok(f) => Box::new(f),
            Err(e) => {
                tracing::warn!(path = %path, error = %e, "cannot open the access log file; its lines are dropped");
                // Drain so senders see a full queue only as long as we live.
                for _ in rx.iter() {
                    stats.dropped.fetch_add(1, Ordering::Relaxed);
                }
                return;
            }
        },
        #[cfg(test)]
        Output::Memory(lines) => Box::new(MemoryWriter(lines.clone())),
    };
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    // The thread wakes on a timer and drains what queued meanwhile, rather than blocking
    // on the queue: a sender then never has to wake it, which at thousands of requests a
    // second costs the request path more than the formatting does. Lines reach the sink
    // at most one tick late.
    loop {
        buf.clear();
        let mut count = 0u64;
        let mut gone = false;
        loop {
            match rx.try_recv() {
                Ok(line) => {
                    buf.extend_from_slice(line.as_bytes());
                    count += 1;
                    if count >= BATCH as u64 {
                        write_batch(&mut sink, &buf, count, stats);
                        buf.clear();
                        count = 0;
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    gone = true;
                    break;
                }
            }
        }
        if count > 0 {
            write_batch(&mut sink, &buf, count, stats);
        }
        if gone {
            return;
        }
        std::thread::sleep(TICK);
    }
}

/// How often the writer drains the queue.
const TICK: std::time::Duration = std::time::Duration::from_millis(20);

fn write_batch(sink: &mut Box<dyn Write>, buf: &[u8], count: u64, stats: &LogStats) {
    match sink.write_all(buf).and_then(|()| sink.flush()) {
        Ok(()) => {
            stats.written.fetch_add(count, Ordering::Relaxed);
        }
        Err(e) => {
            stats.dropped.fetch_add(count, Ordering::Relaxed);
            tracing::debug!(error = %e, "access log write failed");
        }
    }
}

#[cfg(test)]
struct MemoryWriter(Arc<std::sync::Mutex<Vec<String>>>);

#[cfg(test)]
impl Write for MemoryWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let mut lines = self.0.lock().expect("not poisoned");
        lines.extend(text.split_inclusive('\n').map(str::to_string));
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn lines_reach_the_file_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let stats = Arc::new(LogStats::default());
        let w = LineWriter::start(
            Output::File(path.display().to_string()),
            QUEUE_LINES,
            stats.clone(),
        )
        .unwrap();
        for i in 0..100 {
            w.offer(format!("line {i}\n"));
        }
        drop(w);
        assert!(
            weft_testkit::wait::until_blocking(Duration::from_secs(10), || {
                stats.written.load(Ordering::Relaxed) == 100
            }),
            "lines written"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let expected: String = (0..100).map(|i| format!("line {i}\n")).collect();
        assert_eq!(text, expected);
        assert_eq!(stats.dropped(), 0);
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_blocking() {
        // A writer whose thread is not consuming: the queue holds 2 lines, more are dropped.
        let (tx, rx) = sync_channel::<String>(2);
        let stats = Arc::new(LogStats::default());
        let w = LineWriter {
            tx,
            stats: stats.clone(),
        };
        for i in 0..5 {
            w.offer(format!("{i}\n"));
        }
        assert_eq!(stats.dropped(), 3);
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), ["0\n", "1\n"]);
        // A writer whose thread is gone also drops.
        drop(rx);
        w.offer("late\n".into());
        assert_eq!(stats.dropped(), 4);
    }

    #[test]
    fn an_unopenable_file_drops_its_lines() {
        let stats = Arc::new(LogStats::default());
        let w = LineWriter::start(
            Output::File("/nonexistent-dir/for/sure/access.log".into()),
            16,
            stats.clone(),
        )
        .unwrap();
        w.offer("x\n".into());
        drop(w);
        assert!(
            weft_testkit::wait::until_blocking(Duration::from_secs(10), || stats.dropped() == 1),
            "drop counted"
        );
    }
}
