//! Whole histories in memory: [`read_history`] reads either encoding
//! (`history.bin`, see `binary`; or the JSON-lines export `history.jsonl`:
//! the meta line, then one event per line), [`write_history`] writes the
//! binary one. `log.json` beside it holds the authoritative message log.
//!
//! These load every event; the checker and the reports stream instead
//! (`HistoryReader`). They stay for tests, merges and small tools.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::binary::{is_binary_history, HistoryReader, HistoryWriter};
use super::{Event, RunMeta};

/// A whole recorded run: meta plus events in recording order.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    pub meta: RunMeta,
    pub events: Vec<Event>,
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("cannot open history file {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write history file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path} line {line}: {source}")]
    Read {
        path: PathBuf,
        line: usize,
        source: std::io::Error,
    },
    #[error("{path} line {line} is not a valid history record: {source}")]
    Parse {
        path: PathBuf,
        line: usize,
        source: serde_json::Error,
    },
    #[error("{path} is empty: a history starts with its meta line")]
    Empty { path: PathBuf },
    #[error("{path} is not a valid history file at byte offset {offset}: {what}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        what: String,
    },
    #[error("cannot read {path} at byte offset {offset}: {source}")]
    ReadAt {
        path: PathBuf,
        offset: u64,
        source: std::io::Error,
    },
}

/// Writes `history` in the binary encoding (`history.bin`).
pub fn write_history(path: &Path, history: &History) -> Result<(), HistoryError> {
    let mut writer = HistoryWriter::create(path)?;
    for event in &history.events {
        writer.write(event)?;
    }
    writer.finish(&history.meta).map(|_| ())
}

/// Reads a whole history, binary or JSON lines (told apart by the magic).
/// Events come in recording order.
pub fn read_history(path: &Path) -> Result<History, HistoryError> {
    if !is_binary_history(path)? {
        return read_history_jsonl(path);
    }
    let mut reader = HistoryReader::open(path)?;
    let mut events = Vec::new();
    while let Some(event) = reader.next_event()? {
        events.push(event);
    }
    Ok(History {
        meta: reader.meta().clone(),
        events,
    })
}

/// Streams the binary history at `source` into JSON lines at `out`
/// (constant memory); returns the number of events.
pub fn export_jsonl(source: &Path, out: &Path) -> Result<u64, HistoryError> {
    let mut reader = HistoryReader::open(source)?;
    let write_err = |source| HistoryError::Write {
        path: out.to_path_buf(),
        source,
    };
    let mut writer = BufWriter::new(File::create(out).map_err(write_err)?);
    serde_json::to_writer(&mut writer, reader.meta()).map_err(|e| write_err(e.into()))?;
    writeln!(writer).map_err(write_err)?;
    let mut events = 0u64;
    while let Some(event) = reader.next_event()? {
        serde_json::to_writer(&mut writer, &event).map_err(|e| write_err(e.into()))?;
        writeln!(writer).map_err(write_err)?;
        events += 1;
    }
    writer.flush().map_err(write_err)?;
    Ok(events)
}

/// Writes `history` as JSON lines (the `harness export --jsonl` format).
pub fn write_history_jsonl(path: &Path, history: &History) -> Result<(), HistoryError> {
    let write_err = |source| HistoryError::Write {
        path: path.to_path_buf(),
        source,
    };
    let file = File::create(path).map_err(write_err)?;
    let mut out = BufWriter::new(file);
    let meta = serde_json::to_string(&history.meta).map_err(|e| write_err(e.into()))?;
    writeln!(out, "{meta}").map_err(write_err)?;
    for event in &history.events {
        let line = serde_json::to_string(event).map_err(|e| write_err(e.into()))?;
        writeln!(out, "{line}").map_err(write_err)?;
    }
    out.flush().map_err(write_err)
}

/// Reads a JSON-lines history (an export, or a run recorded before
/// `history.bin`).
pub fn read_history_jsonl(path: &Path) -> Result<History, HistoryError> {
    let file = File::open(path).map_err(|source| HistoryError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let mut lines = BufReader::new(file).lines().enumerate();
    let parse_err = |line: usize, source| HistoryError::Parse {
        path: path.to_path_buf(),
        line: line + 1,
        source,
    };
    let read_err = |line: usize, source| HistoryError::Read {
        path: path.to_path_buf(),
        line: line + 1,
        source,
    };
    let (index, first) = lines.next().ok_or_else(|| HistoryError::Empty {
        path: path.to_path_buf(),
    })?;
    let first = first.map_err(|e| read_err(index, e))?;
    let meta: RunMeta = serde_json::from_str(&first).map_err(|e| parse_err(index, e))?;
    let mut events = Vec::new();
    for (index, line) in lines {
        let line = line.map_err(|e| read_err(index, e))?;
        if line.trim().is_empty() {
            continue;
        }
        events.push(serde_json::from_str(&line).map_err(|e| parse_err(index, e))?);
    }
    Ok(History { meta, events })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Position;
    use crate::history::{
        ConversationInfo, CursorOrigin, DeviceInfo, DisconnectCause, ErrorCode, EventKind,
        GapReason, ResumeClaim, ResumeMode, SendOutcome,
    };
    use uuid::Uuid;

    #[test]
    fn round_trips_through_jsonl_and_binary() {
        let history = History {
            meta: RunMeta {
                faults: Vec::new(),
                scenario_name: "t".into(),
                seed: 7,
                started_at_unix_ms: 1,
                devices: vec![DeviceInfo {
                    user_id: Uuid::new_v4(),
                    client_id: Uuid::new_v4(),
                    resume_mode: ResumeMode::ClientCursor,
                    conversations: vec![0],
                }],
                conversations: vec![ConversationInfo {
                    conversation_id: Uuid::new_v4(),
                }],
            },
            events: vec![
                EventKind::Connected {
                    client_id: Some(Uuid::from_u128(9)),
                    claim: ResumeClaim::Cursor {
                        from: Position::new(1, 0),
                        origin: CursorOrigin::Stored,
                    },
                    epoch: Some("e".into()),
                },
                EventKind::Connected {
                    client_id: None,
                    claim: ResumeClaim::Recovered { recovered: false },
                    epoch: None,
                },
                EventKind::Gap {
                    resume_from: None,
                    first_available: None,
                    reason: GapReason::RecoveryFailed,
                },
                EventKind::SendOutcome {
                    client_msg_id: Uuid::from_u128(1),
                    outcome: SendOutcome::Acked {
                        id: Position::new(3, 4),
                        duplicate: true,
                    },
                },
                EventKind::SendOutcome {
                    client_msg_id: Uuid::from_u128(2),
                    outcome: SendOutcome::DefiniteFailure {
                        code: ErrorCode::Unavailable,
                        message: "not appended".into(),
                    },
                },
                EventKind::SendOutcome {
                    client_msg_id: Uuid::from_u128(3),
                    outcome: SendOutcome::Indeterminate {
                        code: ErrorCode::Internal,
                        message: String::new(),
                    },
                },
                EventKind::Error {
                    code: ErrorCode::RateLimited,
                    message: "slow down".into(),
                },
            ]
            .into_iter()
            .map(|kind| Event {
                at_us: 1,
                device: 0,
                conversation: 0,
                socket: 0,
                kind,
            })
            .chain([
                Event {
                    at_us: 5,
                    device: 0,
                    conversation: 0,
                    socket: 0,
                    kind: EventKind::CaughtUp {
                        last_id: Position::new(1, 2),
                        replayed: 3,
                    },
                },
                Event {
                    at_us: 6,
                    device: 0,
                    conversation: 0,
                    socket: 0,
                    kind: EventKind::Disconnect(DisconnectCause::ServerClose { code: Some(1001) }),
                },
            ])
            .collect(),
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        write_history_jsonl(&path, &history).unwrap();
        assert_eq!(read_history(&path).unwrap(), history);
        let path = dir.path().join("history.bin");
        write_history(&path, &history).unwrap();
        assert_eq!(read_history(&path).unwrap(), history);
    }

    /// A code this harness does not know reads as `other`, not as a
    /// broken history.
    #[test]
    fn unknown_error_codes_read_as_other() {
        let line = r#"{"at_us":1,"device":0,"conversation":0,"socket":0,"ev":"error","code":"teapot","message":""}"#;
        let event: Event = serde_json::from_str(line).unwrap();
        assert!(matches!(
            event.kind,
            EventKind::Error {
                code: ErrorCode::Other,
                ..
            }
        ));
    }

    #[test]
    fn bad_line_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        std::fs::write(&path, "{\"nope\":1}\n").unwrap();
        let err = read_history(&path).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }
}
