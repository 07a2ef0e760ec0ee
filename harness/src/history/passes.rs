//! Reading a history file's events as many times as a consumer walks
//! them, one event at a time, so memory does not grow with the history:
//! the checker, the latency analysis and the log rebuild each take two
//! passes over `history.bin` instead of a loaded `Vec<Event>`.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use super::{is_binary_history, read_history, Event, HistoryError, HistoryReader, RunMeta};

/// A history file opened for streaming passes. A read error ends the pass
/// it happens in (the pass just sees fewer events); [`finish`] returns the
/// first one, so a result computed from a damaged file is discarded.
///
/// [`finish`]: HistoryPasses::finish
pub struct HistoryPasses {
    path: PathBuf,
    meta: RunMeta,
    /// The JSON-lines export is loaded whole (it is no format runs
    /// write); `history.bin` is read again for every pass.
    loaded: Option<Vec<Event>>,
    failed: RefCell<Option<HistoryError>>,
}

impl HistoryPasses {
    /// Reads the meta (`history.bin`: its footer only).
    pub fn open(path: &Path) -> Result<Self, HistoryError> {
        let (meta, loaded) = if is_binary_history(path)? {
            (HistoryReader::open(path)?.meta().clone(), None)
        } else {
            let history = read_history(path)?;
            (history.meta, Some(history.events))
        };
        Ok(HistoryPasses {
            path: path.to_path_buf(),
            meta,
            loaded,
            failed: RefCell::new(None),
        })
    }

    pub fn meta(&self) -> &RunMeta {
        &self.meta
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One pass over every event, in recording order.
    pub fn events(&self) -> impl Iterator<Item = Event> + '_ {
        let mut loaded = self.loaded.as_deref().map(<[Event]>::iter);
        let mut reader = match (&loaded, HistoryReader::open(&self.path)) {
            (Some(_), _) => None,
            (None, Ok(reader)) => Some(reader),
            (None, Err(error)) => {
                self.fail(error);
                None
            }
        };
        std::iter::from_fn(move || {
            if let Some(events) = loaded.as_mut() {
                return events.next().cloned();
            }
            match reader.as_mut()?.next_event() {
                Ok(event) => event,
                Err(error) => {
                    self.fail(error);
                    reader = None;
                    None
                }
            }
        })
    }

    fn fail(&self, error: HistoryError) {
        self.failed.borrow_mut().get_or_insert(error);
    }

    /// `Ok` if every pass so far read the whole file.
    pub fn finish(&self) -> Result<(), HistoryError> {
        match self.failed.borrow_mut().take() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}
