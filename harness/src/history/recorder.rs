//! Streams events to `history.bin` while the run goes: sockets hand each
//! event to one writer thread over a channel, so no socket keeps its
//! history in memory and the harness's RSS does not grow with run length.
//!
//! A thread, not a tokio task: encoding and file writes block, and must
//! not take a runtime worker from the sockets.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use super::binary::{HistoryWriter, WrittenHistory};
use super::{Event, HistoryError, RunMeta};

/// How long the writer thread sleeps when it has caught up. It polls
/// instead of blocking in `recv`: a blocked receiver made every event's
/// `send` wake it (a futex syscall and a context switch per event, on the
/// sockets' runtime threads); polling, senders only push to the queue, and
/// the thread drains a batch per wake-up. At 2 ms its 500 wake-ups a second
/// were a quarter of the harness's context switches at churn-1k (`perf
/// stat`, docs/performance.md "Client CPU, fourth pass"); 10 ms holds ~50
/// events (a few KB) there and wakes it 100 times a second.
const WRITER_IDLE: std::time::Duration = std::time::Duration::from_millis(10);

enum Message {
    Event(Event),
    Finish {
        meta: Box<RunMeta>,
        done: tokio::sync::oneshot::Sender<Result<WrittenHistory, HistoryError>>,
    },
}

/// A cheap handle to the history writer; clone it into every socket.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Message>,
    path: PathBuf,
    thread: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("path", &self.path)
            .finish()
    }
}

impl Recorder {
    /// Creates the file and starts the writer thread.
    pub fn create(path: &Path) -> Result<Self, HistoryError> {
        let mut writer = HistoryWriter::create(path)?;
        let (tx, rx) = mpsc::channel::<Message>();
        let thread = std::thread::Builder::new()
            .name("history-writer".into())
            .spawn(move || {
                // The first write error is kept and reported at `finish`;
                // later events are drained (never block the sockets) but
                // not written.
                let mut failed: Option<HistoryError> = None;
                loop {
                    let message = match rx.try_recv() {
                        Ok(message) => message,
                        Err(mpsc::TryRecvError::Empty) => {
                            std::thread::sleep(WRITER_IDLE);
                            continue;
                        }
                        Err(mpsc::TryRecvError::Disconnected) => return,
                    };
                    match message {
                        Message::Event(event) => {
                            if failed.is_none() {
                                if let Err(err) = writer.write(&event) {
                                    failed = Some(err);
                                }
                            }
                        }
                        Message::Finish { meta, done } => {
                            let result = match failed {
                                Some(err) => Err(err),
                                None => writer.finish(&meta),
                            };
                            // Err only when `finish`'s caller is gone: nobody to tell.
                            let _ = done.send(result);
                            return;
                        }
                    }
                }
            })
            .map_err(|source| HistoryError::Write {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Recorder {
            tx,
            path: path.to_path_buf(),
            thread: Arc::new(Mutex::new(Some(thread))),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Hands one event to the writer; never blocks.
    pub fn record(&self, event: Event) {
        // Err only after `finish`: the history is closed, and an event
        // from a socket that outlived the run is dropped (as its in-memory
        // history was before streaming).
        let _ = self.tx.send(Message::Event(event));
    }

    /// Writes the meta and the footer after every queued event, and waits
    /// for the file to be complete. Events recorded later are dropped.
    pub async fn finish(&self, meta: RunMeta) -> Result<WrittenHistory, HistoryError> {
        let closed = || HistoryError::Write {
            path: self.path.clone(),
            source: std::io::Error::other("the history writer thread is gone"),
        };
        let (done, result) = tokio::sync::oneshot::channel();
        self.tx
            .send(Message::Finish {
                meta: Box::new(meta),
                done,
            })
            .map_err(|_| closed())?;
        let written = result.await.map_err(|_| closed())?;
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(thread) = thread {
            // The thread has answered and returns right after; a panic
            // there would already have failed the answer above.
            let _ = thread.join();
        }
        written
    }
}
