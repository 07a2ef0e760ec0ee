//! Property test: for arbitrary interleavings of appends, tailer
//! dispatches (with a bounded queue that overflows into "lagged"), backlog
//! reads and socket writes, the merge writes every id after the resume
//! point exactly once, in order.

use std::collections::VecDeque;
use std::convert::Infallible;

use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Id(StreamId);

impl HasId for Id {
    fn id(&self) -> StreamId {
        self.0
    }
}

/// A stream, a tailer and one socket, advanced one scheduled step at each
/// I/O call the merge makes.
struct Sim {
    stream: Vec<StreamId>,
    appends_left: usize,
    next_ms: u64,
    tailer_cursor: StreamId,
    queue: VecDeque<StreamId>,
    capacity: usize,
    lagged: bool,
    written: Vec<StreamId>,
    schedule: Vec<u8>,
    step: usize,
    /// Re-creates the flaw `no-overlap-dedup` the way `flaws::FlawedIo`
    /// does: a queued id already written is written again.
    repeat_overlap: bool,
}

impl Sim {
    fn append(&mut self) {
        if self.appends_left == 0 {
            return;
        }
        self.appends_left -= 1;
        // Same-millisecond entries get seq > 0, like Redis.
        let id = match self.stream.last() {
            Some(last) if self.next_ms.is_multiple_of(3) => StreamId::new(last.ms, last.seq + 1),
            _ => StreamId::new(self.next_ms, 0),
        };
        self.next_ms += 1;
        self.stream.push(id);
    }

    /// The tailer hands up to `count` new entries to the socket's queue,
    /// skipping it while lagged, flagging it when the queue is full (the
    /// rule of `fanout::tailer::dispatch`).
    fn dispatch(&mut self, count: usize) {
        let new: Vec<StreamId> = self
            .stream
            .iter()
            .copied()
            .filter(|id| *id > self.tailer_cursor)
            .take(count)
            .collect();
        for id in new {
            self.tailer_cursor = id;
            if self.lagged {
                continue;
            }
            if self.queue.len() < self.capacity {
                self.queue.push_back(id);
            } else {
                self.lagged = true;
            }
        }
    }

    fn tick(&mut self) {
        if self.schedule.is_empty() {
            return;
        }
        let op = self.schedule[self.step % self.schedule.len()];
        self.step += 1;
        match op % 4 {
            0 | 1 => {
                for _ in 0..=(op / 4 % 3) {
                    self.append();
                }
            }
            2 => self.dispatch((op / 4 % 5) as usize + 1),
            _ => {}
        }
    }
}

impl MergeIo for Sim {
    type Backlog = Id;
    type Live = Id;
    type Error = Infallible;

    async fn head(&mut self) -> Result<StreamId, Infallible> {
        self.tick();
        Ok(self.stream.last().copied().unwrap_or(StreamId::ZERO))
    }

    async fn page_after(
        &mut self,
        after: StreamId,
        until: StreamId,
        count: usize,
    ) -> Result<Vec<Id>, Infallible> {
        self.tick();
        Ok(self
            .stream
            .iter()
            .copied()
            .filter(|id| *id > after && *id <= until)
            .take(count)
            .map(Id)
            .collect())
    }

    async fn try_queued(&mut self) -> Option<Id> {
        while let Some(id) = self.queue.pop_front() {
            let seen = self.written.iter().max().is_some_and(|max| id <= *max);
            if self.repeat_overlap && seen {
                self.written.push(id);
                continue;
            }
            return Some(Id(id));
        }
        None
    }

    fn take_lagged(&mut self) -> bool {
        std::mem::replace(&mut self.lagged, false)
    }

    async fn write_backlog(&mut self, entry: Id) -> Result<(), Infallible> {
        self.tick();
        self.written.push(entry.0);
        Ok(())
    }

    async fn write_live(&mut self, message: Id) -> Result<(), Infallible> {
        self.tick();
        self.written.push(message.0);
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

/// Runs a socket's whole life against the simulation: subscribe (tailer
/// starts at the head), catch up, then the live loop until everything was
/// appended and dispatched. Returns what was written and what was owed.
fn play(
    initial: usize,
    resume_index: usize,
    appends: usize,
    capacity: usize,
    page: usize,
    schedule: Vec<u8>,
    repeat_overlap: bool,
) -> (Vec<StreamId>, Vec<StreamId>) {
    let mut sim = Sim {
        stream: Vec::new(),
        appends_left: initial,
        next_ms: 1,
        tailer_cursor: StreamId::ZERO,
        queue: VecDeque::new(),
        capacity,
        lagged: false,
        written: Vec::new(),
        schedule,
        step: 0,
        repeat_overlap,
    };
    for _ in 0..initial {
        sim.append();
    }
    sim.appends_left = appends;
    let resume_from = if resume_index == 0 || sim.stream.is_empty() {
        StreamId::ZERO
    } else {
        sim.stream[(resume_index - 1) % sim.stream.len()]
    };
    // Step 2: subscribe; the tailer starts at the head read now.
    sim.tailer_cursor = sim.stream.last().copied().unwrap_or(StreamId::ZERO);
    let mut merge = Merge::new(resume_from);
    let run = async {
        let _ = merge.catch_up(&mut sim, page).await; // Infallible
                                                      // Step 5: the live loop, as `session::live` drives it: a lag signal
                                                      // wins, otherwise one queued message starts a batch.
        for _ in 0..100_000 {
            if sim.lagged {
                let _ = merge.recover_from_lag(&mut sim, page).await; // Infallible
            } else if let Some(first) = sim.try_queued().await {
                let _ = merge.drain_queue(&mut sim, Some(first), 64).await; // Infallible
            } else if sim.appends_left > 0
                || sim.tailer_cursor < sim.stream.last().copied().unwrap_or(StreamId::ZERO)
            {
                sim.append();
                sim.dispatch(2);
            } else {
                break;
            }
        }
    };
    futures_executor_block_on(run);
    let owed = sim
        .stream
        .iter()
        .copied()
        .filter(|id| *id > resume_from)
        .collect();
    (sim.written, owed)
}

/// The futures here never wait on anything external; poll to completion.
fn futures_executor_block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime")
        .block_on(future)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn merge_never_loses_or_repeats(
        initial in 0usize..40,
        resume_index in 0usize..41,
        appends in 0usize..60,
        capacity in 1usize..5,
        page in 1usize..7,
        schedule in proptest::collection::vec(any::<u8>(), 1..64),
    ) {
        let (written, owed) = play(initial, resume_index, appends, capacity, page, schedule, false);
        prop_assert_eq!(written, owed);
    }
}

#[test]
fn the_overlap_flaw_is_visible_to_this_test() {
    // Sanity: the property above would notice duplicates if the merge let
    // overlap through; some schedule must produce one.
    let found = (0..200u8).any(|seed| {
        let schedule: Vec<u8> = (0..32)
            .map(|i| seed.wrapping_mul(31).wrapping_add(i * 7))
            .collect();
        let (written, owed) = play(10, 3, 30, 2, 3, schedule, true);
        written != owed
    });
    assert!(
        found,
        "no schedule exposed repeated overlap: the simulation is too weak"
    );
}
