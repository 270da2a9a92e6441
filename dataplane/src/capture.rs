//! Packet capture: copies of the frames the workers handle, after the pipeline, with what was
//! done to them (the port they came in on, where they went or why they were dropped), for
//! `kxdp capture` — traffic the engine handles never reaches the host's tcpdump.
//!
//! Off, it costs a worker one branch per batch. On ([`Engine::capture`](crate::Engine::capture)),
//! each worker holds a [`CaptureSink`]: a pool of preallocated [`Record`]s it fills (a copy of up
//! to [`SNAPLEN`] bytes, a timestamp from the vDSO clock) and hands over a bounded channel with
//! `try_send`; the reader gives records back through the worker's own return channel. Nothing
//! is allocated, locked or waited for per packet: with no free record, or a full channel, the
//! frame is not captured and counted as lost. When the reader goes away, the worker drops its
//! sink at the next frame it would have captured.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, SystemTime};

use crate::verdict::{PortId, Verdict};

/// Bytes of each frame kept (a standard MTU frame whole).
pub const SNAPLEN: usize = 1518;
/// Records in flight per worker.
pub const RECORDS_PER_WORKER: usize = 1024;

/// One captured frame.
#[derive(Debug, Clone)]
pub struct Record {
    /// The worker that handled it (its records go back to it).
    pub worker: u32,
    /// When the worker handled it.
    pub at: SystemTime,
    pub in_port: PortId,
    pub verdict: Verdict,
    /// The frame's length; `data` holds at most [`SNAPLEN`] of it.
    pub len: u32,
    pub data: Vec<u8>,
    /// Frames this worker could not capture so far (no free record, channel full).
    pub lost: u64,
}

impl Record {
    fn empty(worker: u32) -> Record {
        Record {
            worker,
            at: SystemTime::UNIX_EPOCH,
            in_port: PortId(0),
            verdict: Verdict::ToHost,
            len: 0,
            data: Vec::with_capacity(SNAPLEN),
            lost: 0,
        }
    }
}

/// A worker's end of a capture.
#[derive(Debug)]
pub struct CaptureSink {
    worker: u32,
    /// Only frames coming in on, or sent out of, this port; `None`: all.
    filter: Option<PortId>,
    out: SyncSender<Record>,
    free: Receiver<Record>,
    /// Frames not captured: no free record, or the channel full.
    pub lost: u64,
    /// The reader is gone: the worker drops this sink.
    pub closed: bool,
}

impl CaptureSink {
    /// Whether a frame from `in_port` with `verdict` is wanted.
    #[inline]
    pub fn wants(&self, in_port: PortId, verdict: Verdict) -> bool {
        match self.filter {
            None => true,
            Some(p) => in_port == p || verdict == Verdict::Forward(p),
        }
    }

    /// Copies `data` into a free record and hands it over.
    #[inline]
    pub fn record(&mut self, in_port: PortId, verdict: Verdict, data: &[u8]) {
        let Ok(mut r) = self.free.try_recv() else {
            self.lost += 1;
            return;
        };
        r.worker = self.worker;
        r.at = SystemTime::now();
        r.in_port = in_port;
        r.verdict = verdict;
        // Fits: frames are shorter than 2^32.
        r.len = data.len() as u32;
        r.lost = self.lost;
        r.data.clear();
        // Within the capacity reserved at creation: no allocation.
        r.data
            .extend_from_slice(data.get(..SNAPLEN.min(data.len())).unwrap_or_default());
        match self.out.try_send(r) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.lost += 1,
            Err(TrySendError::Disconnected(_)) => self.closed = true,
        }
    }
}

/// The reader's end: records from every worker.
#[derive(Debug)]
pub struct CaptureStream {
    records: Receiver<Record>,
    /// Per worker: where its records go back.
    returns: Vec<SyncSender<Record>>,
}

impl CaptureStream {
    /// The next record, waiting up to `timeout`; `None` on timeout (or when every worker is
    /// gone).
    pub fn next(&self, timeout: Duration) -> Option<Record> {
        self.records.recv_timeout(timeout).ok()
    }

    /// Gives a record back to its worker's pool.
    pub fn give_back(&self, r: Record) {
        if let Some(tx) = self.returns.get(r.worker as usize) {
            let _ = tx.try_send(r);
        }
    }
}

/// A stream and one sink per worker, each sink's pool filled with [`RECORDS_PER_WORKER`]
/// records (allocated here, once).
pub fn new(workers: u32, filter: Option<PortId>) -> (CaptureStream, Vec<CaptureSink>) {
    let per = RECORDS_PER_WORKER;
    let (out, records) = sync_channel(per * workers.max(1) as usize);
    let mut returns = Vec::new();
    let mut sinks = Vec::new();
    for w in 0..workers {
        let (ret, free) = sync_channel(per);
        for _ in 0..per {
            // Cannot fail: the channel holds `per` records.
            let _ = ret.try_send(Record::empty(w));
        }
        returns.push(ret);
        sinks.push(CaptureSink {
            worker: w,
            filter,
            out: out.clone(),
            free,
            lost: 0,
            closed: false,
        });
    }
    (CaptureStream { records, returns }, sinks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::DropReason;

    #[test]
    fn records_go_round_and_the_filter_applies() {
        let (stream, mut sinks) = new(2, Some(PortId(3)));
        let s = &mut sinks[1];
        assert!(s.wants(PortId(3), Verdict::Drop(DropReason::Spoofed)));
        assert!(s.wants(PortId(0), Verdict::Forward(PortId(3))));
        assert!(!s.wants(PortId(0), Verdict::Forward(PortId(1))));
        let big = vec![7u8; 4000];
        s.record(PortId(3), Verdict::Forward(PortId(0)), &big);
        let r = stream.next(Duration::from_secs(1)).expect("a record");
        assert_eq!((r.worker, r.len, r.data.len()), (1, 4000, SNAPLEN));
        assert_eq!(r.in_port, PortId(3));
        let cap = r.data.capacity();
        stream.give_back(r);
        // The pool empties, then frames are lost rather than waited for.
        for _ in 0..RECORDS_PER_WORKER + 5 {
            s.record(PortId(3), Verdict::ToHost, &[1, 2, 3]);
        }
        assert_eq!(s.lost, 5);
        let r = stream.next(Duration::from_secs(1)).expect("a record");
        assert_eq!(r.data, [1, 2, 3]);
        assert_eq!(
            r.data.capacity(),
            cap,
            "records are reused, not reallocated"
        );
        // The reader gone: the sink notices.
        drop(stream);
        drop(r);
        let s = &mut sinks[0];
        s.record(PortId(3), Verdict::ToHost, &[1]);
        assert!(s.closed);
    }
}
