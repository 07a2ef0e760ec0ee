//! Throughput of the backlog/live merge: a full `catch_up` against an
//! in-memory stream and queue, and the `offer` ordering rule alone.
//! The in-memory I/O is as cheap as possible so the merge's own cost
//! dominates (real sessions add Redis and socket latency on top).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use recovery_protocol::StreamId;
use server::session::merge::{HasId, Merge, MergeIo};

const BACKLOG_ENTRIES: u64 = 10_000;
const PAGE_SIZE: usize = 500;
const QUEUED_LIVE: u64 = 1_000;
/// Queued messages that are also in the backlog (the overlap `offer` drops).
const QUEUED_OVERLAP: u64 = QUEUED_LIVE / 2;
const OFFER_IDS: u64 = 1_000_000;

#[derive(Debug, Clone, Copy)]
struct Entry(StreamId);

impl HasId for Entry {
    fn id(&self) -> StreamId {
        self.0
    }
}

/// Ids like Redis assigns them: a few entries share a millisecond.
fn stream_id(n: u64) -> StreamId {
    StreamId::new(1_700_000_000_000 + n / 4, n % 4)
}

/// A stream snapshot, a socket queue and a socket that writes to a Vec.
#[derive(Clone)]
struct MemoryIo {
    stream: Vec<StreamId>,
    queue: VecDeque<StreamId>,
    written: Vec<StreamId>,
}

impl MemoryIo {
    fn new() -> MemoryIo {
        let stream: Vec<StreamId> = (0..BACKLOG_ENTRIES).map(stream_id).collect();
        let first_queued = BACKLOG_ENTRIES - QUEUED_OVERLAP;
        let queue = (first_queued..first_queued + QUEUED_LIVE)
            .map(stream_id)
            .collect();
        MemoryIo {
            stream,
            queue,
            written: Vec::with_capacity((BACKLOG_ENTRIES + QUEUED_LIVE) as usize),
        }
    }
}

impl MergeIo for MemoryIo {
    type Backlog = Entry;
    type Live = Entry;
    type Error = Infallible;

    async fn head(&mut self) -> Result<StreamId, Infallible> {
        Ok(self.stream.last().copied().unwrap_or(StreamId::ZERO))
    }

    async fn page_after(
        &mut self,
        after: StreamId,
        until: StreamId,
        count: usize,
    ) -> Result<Vec<Entry>, Infallible> {
        let start = self.stream.partition_point(|id| *id <= after);
        Ok(self.stream[start..]
            .iter()
            .take_while(|id| **id <= until)
            .take(count)
            .map(|id| Entry(*id))
            .collect())
    }

    async fn try_queued(&mut self) -> Option<Entry> {
        self.queue.pop_front().map(Entry)
    }

    fn take_lagged(&mut self) -> bool {
        false
    }

    async fn write_backlog(&mut self, entry: Entry) -> Result<(), Infallible> {
        self.written.push(entry.0);
        Ok(())
    }

    async fn write_live(&mut self, message: Entry) -> Result<(), Infallible> {
        self.written.push(message.0);
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

fn catch_up(runtime: &tokio::runtime::Runtime, mut io: MemoryIo) -> (u64, MemoryIo) {
    let mut merge = Merge::new(StreamId::ZERO);
    let written = runtime
        .block_on(merge.catch_up(&mut io, PAGE_SIZE))
        .unwrap_or_else(|never| match never {});
    (written, io)
}

fn bench_catch_up(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("current-thread runtime");
    let template = MemoryIo::new();
    // The bench must time a correct merge: every id once, in order.
    let (written, io) = catch_up(&runtime, template.clone());
    let expected = BACKLOG_ENTRIES + QUEUED_LIVE - QUEUED_OVERLAP;
    assert_eq!(written, expected);
    assert!(io.written.windows(2).all(|pair| pair[0] < pair[1]));

    let mut group = c.benchmark_group("merge");
    // Every backlog entry and queued message is offered once.
    group.throughput(Throughput::Elements(BACKLOG_ENTRIES + QUEUED_LIVE));
    group.bench_function("catch_up_10k_backlog_1k_queued", |b| {
        b.iter_batched(
            || template.clone(),
            |io| catch_up(&runtime, io),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn bench_offer(c: &mut Criterion) {
    // Every fourth id repeats an older one, like a backlog/queue overlap.
    let ids: Vec<StreamId> = (0..OFFER_IDS)
        .map(|n| {
            if n % 4 == 3 {
                stream_id(n - 2)
            } else {
                stream_id(n)
            }
        })
        .collect();
    let mut group = c.benchmark_group("merge");
    group.throughput(Throughput::Elements(OFFER_IDS));
    group.bench_function("offer_1M_ids", |b| {
        b.iter(|| {
            let mut merge = Merge::new(StreamId::ZERO);
            let mut written = 0u64;
            for id in black_box(&ids) {
                written += u64::from(merge.offer(*id));
            }
            written
        })
    });
    group.finish();
}

criterion_group!(benches, bench_catch_up, bench_offer);
criterion_main!(benches);
