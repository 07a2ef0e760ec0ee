//! `history.bin`: the history as the run writes it, event by event, in the
//! compact encoding of `codec`.
//!
//! Layout: the 8-byte magic `RCHIST1\n`; then frames, each a varint
//! length and that many bytes (one event record, or the meta); the last
//! frame holds the `RunMeta` as JSON (first byte [`META_FRAME`]), and the
//! file ends with the meta frame's offset (u64, little endian) and the
//! 8-byte end magic `RCHEND1\n`. The meta comes last because faults are
//! known only at the end; readers find it through the footer, so they can
//! hand out the meta before streaming the events.
//!
//! A run that dies mid-way leaves a file without footer: reading it fails
//! with an error naming the file and the offset where it stops.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::codec::{put_varint, Bytes, CodecError, Decoder, Encoder};
use super::{Event, HistoryError, RunMeta};

pub const MAGIC: &[u8; 8] = b"RCHIST1\n";
const END_MAGIC: &[u8; 8] = b"RCHEND1\n";
const FOOTER_LEN: u64 = 16;
/// First byte of the meta frame (no event tag has all bits set).
const META_FRAME: u8 = 0xff;
/// Longest frame accepted: events are tens of bytes; the meta of a huge
/// run a few MB. Anything larger is corruption, not a reason to allocate.
const MAX_FRAME: u64 = 1 << 30;

fn corrupt(path: &Path, offset: u64, what: impl Into<String>) -> HistoryError {
    HistoryError::Corrupt {
        path: path.to_path_buf(),
        offset,
        what: what.into(),
    }
}

/// Writes `history.bin` one event at a time; memory stays constant.
pub struct HistoryWriter {
    path: PathBuf,
    out: BufWriter<File>,
    encoder: Encoder,
    record: Vec<u8>,
    frame: Vec<u8>,
    offset: u64,
    events: u64,
}

/// What a finished history file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrittenHistory {
    pub events: u64,
    pub bytes: u64,
}

impl HistoryWriter {
    pub fn create(path: &Path) -> Result<Self, HistoryError> {
        let write_err = |source| HistoryError::Write {
            path: path.to_path_buf(),
            source,
        };
        let file = File::create(path).map_err(write_err)?;
        let mut out = BufWriter::with_capacity(256 * 1024, file);
        out.write_all(MAGIC).map_err(write_err)?;
        Ok(HistoryWriter {
            path: path.to_path_buf(),
            out,
            encoder: Encoder::new(),
            record: Vec::with_capacity(256),
            frame: Vec::with_capacity(8),
            offset: MAGIC.len() as u64,
            events: 0,
        })
    }

    fn write_frame(&mut self) -> Result<(), HistoryError> {
        self.frame.clear();
        put_varint(&mut self.frame, self.record.len() as u64);
        let result = self
            .out
            .write_all(&self.frame)
            .and_then(|()| self.out.write_all(&self.record));
        result.map_err(|source| HistoryError::Write {
            path: self.path.clone(),
            source,
        })?;
        self.offset += (self.frame.len() + self.record.len()) as u64;
        Ok(())
    }

    pub fn write(&mut self, event: &Event) -> Result<(), HistoryError> {
        self.record.clear();
        self.encoder.encode(event, &mut self.record);
        self.events += 1;
        self.write_frame()
    }

    /// Appends the meta and the footer, and flushes.
    pub fn finish(mut self, meta: &RunMeta) -> Result<WrittenHistory, HistoryError> {
        let meta_offset = self.offset;
        self.record.clear();
        self.record.push(META_FRAME);
        serde_json::to_writer(&mut self.record, meta).map_err(|e| HistoryError::Write {
            path: self.path.clone(),
            source: e.into(),
        })?;
        self.write_frame()?;
        let write_err = |source| HistoryError::Write {
            path: self.path.clone(),
            source,
        };
        self.out
            .write_all(&meta_offset.to_le_bytes())
            .and_then(|()| self.out.write_all(END_MAGIC))
            .and_then(|()| self.out.flush())
            .map_err(write_err)?;
        Ok(WrittenHistory {
            events: self.events,
            bytes: self.offset + FOOTER_LEN,
        })
    }
}

/// Reads `history.bin` streaming: the meta first (from the footer), then
/// one event at a time in recording order. Memory stays constant.
pub struct HistoryReader {
    path: PathBuf,
    input: BufReader<File>,
    decoder: Decoder,
    meta: RunMeta,
    /// Offset of the next frame.
    offset: u64,
    /// Where the events end (the meta frame).
    events_end: u64,
    frame: Vec<u8>,
}

impl HistoryReader {
    pub fn open(path: &Path) -> Result<Self, HistoryError> {
        let read_err = |offset, source| HistoryError::ReadAt {
            path: path.to_path_buf(),
            offset,
            source,
        };
        let file = File::open(path).map_err(|source| HistoryError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let len = file.metadata().map_err(|e| read_err(0, e))?.len();
        let mut input = BufReader::with_capacity(256 * 1024, file);
        let mut magic = [0u8; 8];
        if len < MAGIC.len() as u64 {
            return Err(corrupt(path, 0, "too short to be a history file"));
        }
        input.read_exact(&mut magic).map_err(|e| read_err(0, e))?;
        if &magic != MAGIC {
            return Err(corrupt(path, 0, "does not start with the history magic"));
        }
        if len < MAGIC.len() as u64 + FOOTER_LEN {
            return Err(corrupt(
                path,
                len,
                "the file ends before its footer (a run that did not finish writing it?)",
            ));
        }
        let footer_at = len - FOOTER_LEN;
        let mut footer = [0u8; FOOTER_LEN as usize];
        input
            .seek(SeekFrom::Start(footer_at))
            .and_then(|_| input.read_exact(&mut footer))
            .map_err(|e| read_err(footer_at, e))?;
        if &footer[8..] != END_MAGIC {
            return Err(corrupt(
                path,
                len,
                "the file has no end marker: truncated, or the run that wrote it did not finish",
            ));
        }
        let meta_offset = u64::from_le_bytes(footer[..8].try_into().unwrap_or_default());
        if meta_offset < MAGIC.len() as u64 || meta_offset >= footer_at {
            return Err(corrupt(
                path,
                footer_at,
                format!("the footer points at offset {meta_offset}, outside the file"),
            ));
        }
        input
            .seek(SeekFrom::Start(meta_offset))
            .map_err(|e| read_err(meta_offset, e))?;
        let mut reader = HistoryReader {
            path: path.to_path_buf(),
            input,
            decoder: Decoder::new(),
            meta: RunMeta {
                scenario_name: String::new(),
                seed: 0,
                started_at_unix_ms: 0,
                devices: Vec::new(),
                conversations: Vec::new(),
                faults: Vec::new(),
            },
            offset: meta_offset,
            events_end: footer_at,
            frame: Vec::new(),
        };
        reader.read_frame()?;
        if reader.frame.first() != Some(&META_FRAME) || reader.offset != footer_at {
            return Err(corrupt(
                path,
                meta_offset,
                "the footer does not point at the meta frame",
            ));
        }
        reader.meta = serde_json::from_slice(&reader.frame[1..])
            .map_err(|e| corrupt(path, meta_offset, format!("the run meta is not valid: {e}")))?;
        reader
            .input
            .seek(SeekFrom::Start(MAGIC.len() as u64))
            .map_err(|e| read_err(MAGIC.len() as u64, e))?;
        reader.offset = MAGIC.len() as u64;
        reader.events_end = meta_offset;
        Ok(reader)
    }

    pub fn meta(&self) -> &RunMeta {
        &self.meta
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the frame at `self.offset` into `self.frame`.
    fn read_frame(&mut self) -> Result<(), HistoryError> {
        let start = self.offset;
        let mut len = 0u64;
        let mut header = 0u64;
        for shift in (0..64).step_by(7) {
            let mut byte = [0u8; 1];
            self.input
                .read_exact(&mut byte)
                .map_err(|_| corrupt(&self.path, start, "a frame header runs past the end"))?;
            header += 1;
            len |= u64::from(byte[0] & 0x7f) << shift;
            if byte[0] & 0x80 == 0 {
                break;
            }
        }
        if len == 0 || len > MAX_FRAME || start + header + len > self.events_end {
            return Err(corrupt(
                &self.path,
                start,
                format!("a frame claims {len} bytes, past the end of the events"),
            ));
        }
        self.frame.resize(len as usize, 0);
        self.input
            .read_exact(&mut self.frame)
            .map_err(|source| HistoryError::ReadAt {
                path: self.path.clone(),
                offset: start,
                source,
            })?;
        self.offset = start + header + len;
        Ok(())
    }

    /// The next event, or `None` after the last one.
    pub fn next_event(&mut self) -> Result<Option<Event>, HistoryError> {
        if self.offset >= self.events_end {
            return Ok(None);
        }
        let start = self.offset;
        self.read_frame()?;
        let mut bytes = Bytes::new(&self.frame);
        let event = self
            .decoder
            .decode(&mut bytes)
            .map_err(|e| codec_error(&self.path, start, e))?;
        if bytes.at != self.frame.len() {
            return Err(corrupt(
                &self.path,
                start,
                format!(
                    "the event record has {} bytes left over",
                    self.frame.len() - bytes.at
                ),
            ));
        }
        Ok(Some(event))
    }
}

fn codec_error(path: &Path, offset: u64, error: CodecError) -> HistoryError {
    corrupt(path, offset, format!("bad event record: {error}"))
}

impl Iterator for HistoryReader {
    type Item = Result<Event, HistoryError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_event().transpose()
    }
}

/// Whether `path` starts with the binary history magic.
pub fn is_binary_history(path: &Path) -> Result<bool, HistoryError> {
    let mut file = File::open(path).map_err(|source| HistoryError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let mut magic = [0u8; 8];
    let mut read = 0;
    while read < magic.len() {
        match file.read(&mut magic[read..]) {
            Ok(0) => break,
            Ok(count) => read += count,
            Err(source) if source.kind() == std::io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(HistoryError::ReadAt {
                    path: path.to_path_buf(),
                    offset: read as u64,
                    source,
                })
            }
        }
    }
    Ok(&magic == MAGIC)
}
