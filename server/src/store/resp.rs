//! Replay pages read straight from RESP2 bytes.
//!
//! redis-rs parses every reply into a generic `Value` tree: for an XRANGE
//! page that is 11 allocations per entry (the entry, its field array, nine
//! byte vectors), then `parse::parse_entries` walks the tree into
//! `StreamEntry`s. Replay reads thousands of entries per session, so the
//! replay connection (`replay_conn`) reads the reply's bytes itself:
//! `ReplyFrame` finds where a reply ends without allocating (resumable, so
//! a reply arriving in many reads is scanned once), and `xrange_entries`
//! decodes the complete reply into entries with one allocation per entry
//! (its body).
//!
//! Only RESP2 is spoken on that connection (it never sends `HELLO 3`), so
//! RESP3 types are rejected as malformed rather than half-supported.

use recovery_protocol::StreamId;
use uuid::Uuid;

use super::parse::EntryFields;
use super::{StoreError, StreamEntry};

const OP: &str = "XRANGE page (replay connection)";

fn malformed(detail: impl Into<String>) -> StoreError {
    StoreError::Reply {
        op: OP,
        detail: detail.into(),
    }
}

/// Finds the end of one RESP2 reply in a buffer that grows between calls.
/// Keeps its place: each byte is scanned once however the reply is split.
#[derive(Debug, Default)]
pub struct ReplyFrame {
    /// Bytes of the buffer already accounted for.
    scanned: usize,
    /// Items still expected by each open array, innermost last.
    open: Vec<u64>,
}

/// One header line: its type byte, the text after it, and where the next
/// item starts.
fn header(buf: &[u8], at: usize) -> Option<(u8, &[u8], usize)> {
    let line_end = at + buf.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
    Some((buf[at], &buf[at + 1..line_end], line_end + 2))
}

fn length(text: &[u8]) -> Result<i64, StoreError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| malformed(format!("bad length {:?}", String::from_utf8_lossy(text))))
}

/// Longest reply accepted (a page is bounded by `page_bytes`, 1 MiB by
/// default; this only stops a corrupt length from reserving gigabytes).
const MAX_REPLY_BYTES: i64 = 512 << 20;

impl ReplyFrame {
    /// `Some(len)` once `buf[..len]` holds one complete reply; `None`:
    /// read more and call again with the same (grown) buffer.
    pub fn complete(&mut self, buf: &[u8]) -> Result<Option<usize>, StoreError> {
        loop {
            let Some((kind, text, next)) = header(buf, self.scanned) else {
                return Ok(None);
            };
            match kind {
                b'+' | b'-' | b':' => self.scanned = next,
                b'$' => {
                    let len = length(text)?;
                    if len > MAX_REPLY_BYTES {
                        return Err(malformed(format!("bulk string of {len} bytes")));
                    }
                    // -1: nil, no payload.
                    let end = if len < 0 {
                        next
                    } else {
                        next + len as usize + 2
                    };
                    if buf.len() < end {
                        return Ok(None);
                    }
                    self.scanned = end;
                }
                b'*' => {
                    let len = length(text)?;
                    self.scanned = next;
                    if len > 0 {
                        self.open.push(len as u64);
                        continue;
                    }
                }
                other => {
                    return Err(malformed(format!(
                        "unexpected RESP type byte {:?}",
                        other as char
                    )))
                }
            }
            // One item done: close every array it completes.
            loop {
                match self.open.last_mut() {
                    None => return Ok(Some(self.scanned)),
                    Some(left) => {
                        *left -= 1;
                        if *left > 0 {
                            break;
                        }
                        self.open.pop();
                    }
                }
            }
        }
    }
}

/// Reads items from one complete reply.
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn header(&mut self) -> Result<(u8, &'a [u8]), StoreError> {
        let (kind, text, next) =
            header(self.buf, self.at).ok_or_else(|| malformed("reply ends early"))?;
        self.at = next;
        Ok((kind, text))
    }

    /// An array's length (`None` for a nil array).
    fn array(&mut self, what: &str) -> Result<Option<usize>, StoreError> {
        match self.header()? {
            (b'*', text) => {
                let len = length(text)?;
                Ok(usize::try_from(len).ok())
            }
            (b'-', text) => Err(malformed(format!(
                "redis error: {}",
                String::from_utf8_lossy(text)
            ))),
            (other, _) => Err(malformed(format!(
                "{what} is {:?}, not an array",
                other as char
            ))),
        }
    }

    /// A bulk or simple string, borrowed.
    fn text(&mut self, what: &str) -> Result<&'a [u8], StoreError> {
        match self.header()? {
            (b'$', text) => {
                let len = usize::try_from(length(text)?)
                    .map_err(|_| malformed(format!("{what} is nil")))?;
                let bytes = self
                    .buf
                    .get(self.at..self.at + len)
                    .ok_or_else(|| malformed("reply ends early"))?;
                if self.buf.get(self.at + len..self.at + len + 2) != Some(b"\r\n") {
                    return Err(malformed(format!("{what} is not followed by CR LF")));
                }
                self.at += len + 2;
                Ok(bytes)
            }
            (b'+', text) => Ok(text),
            (other, _) => Err(malformed(format!(
                "{what} is {:?}, not a string",
                other as char
            ))),
        }
    }

    /// Skips one item of any shape.
    fn skip(&mut self) -> Result<(), StoreError> {
        let mut frame = ReplyFrame {
            scanned: self.at,
            open: Vec::new(),
        };
        self.at = frame
            .complete(self.buf)?
            .ok_or_else(|| malformed("reply ends early"))?;
        Ok(())
    }
}

/// A complete XRANGE reply (RESP2) as entries of `conversation_id`; the
/// same checks and errors as `parse::parse_entries` (a missing or invalid
/// field names the entry; unknown fields are skipped).
pub fn xrange_entries(reply: &[u8], conversation_id: Uuid) -> Result<Vec<StreamEntry>, StoreError> {
    let mut r = Reader { buf: reply, at: 0 };
    let Some(count) = r.array("reply")? else {
        return Ok(Vec::new());
    };
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        if r.array("entry")? != Some(2) {
            return Err(malformed("entry is not [id, fields]"));
        }
        let id: StreamId = std::str::from_utf8(r.text("id")?)
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| malformed("bad entry id"))?;
        let fields = r
            .array("fields")?
            .ok_or_else(|| malformed(format!("entry {id} has nil fields")))?;
        let mut read = EntryFields::default();
        for _ in 0..fields / 2 {
            match r.text("field name")? {
                b"sender_id" => read.sender_id = Uuid::try_parse_ascii(r.text("sender_id")?).ok(),
                b"client_msg_id" => {
                    read.client_msg_id = Uuid::try_parse_ascii(r.text("client_msg_id")?).ok()
                }
                b"body" => read.body = std::str::from_utf8(r.text("body")?).ok().map(str::to_owned),
                b"sent_at_ms" => {
                    read.sent_at_ms = std::str::from_utf8(r.text("sent_at_ms")?)
                        .ok()
                        .and_then(|text| text.parse().ok())
                }
                _ => r.skip()?,
            }
        }
        if fields % 2 == 1 {
            r.skip()?;
        }
        entries.push(read.into_entry(OP, id, conversation_id)?);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(out: &mut Vec<u8>, text: &str) {
        out.extend_from_slice(format!("${}\r\n{text}\r\n", text.len()).as_bytes());
    }

    fn entry(out: &mut Vec<u8>, id: &str, body: &str, extra: bool) {
        let uuid = Uuid::from_u128(7).to_string();
        out.extend_from_slice(b"*2\r\n");
        bulk(out, id);
        out.extend_from_slice(if extra { b"*10\r\n" } else { b"*8\r\n" });
        for (k, v) in [
            ("sender_id", uuid.as_str()),
            ("client_msg_id", uuid.as_str()),
            ("body", body),
            ("sent_at_ms", "17"),
        ] {
            bulk(out, k);
            bulk(out, v);
        }
        if extra {
            bulk(out, "later_field");
            bulk(out, "ignored");
        }
    }

    fn reply(entries: &[(&str, &str)]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", entries.len()).into_bytes();
        for (i, (id, body)) in entries.iter().enumerate() {
            entry(&mut out, id, body, i % 2 == 1);
        }
        out
    }

    #[test]
    fn decodes_entries_like_the_value_parser() {
        let bytes = reply(&[("1-0", "hello"), ("1-1", "a\r\nb \u{e9}"), ("2-0", "")]);
        let entries = xrange_entries(&bytes, Uuid::nil()).unwrap();
        let ids: Vec<_> = entries.iter().map(|e| e.message.id).collect();
        assert_eq!(
            ids,
            [
                StreamId::new(1, 0),
                StreamId::new(1, 1),
                StreamId::new(2, 0)
            ]
        );
        assert_eq!(entries[1].message.body, "a\r\nb \u{e9}");
        assert_eq!(entries[0].message.sender_id, Uuid::from_u128(7));
        assert_eq!(entries[2].message.sent_at_ms, 17);
        // The same bytes through redis-rs and `parse_entries` agree.
        let value = redis::parse_redis_value(&bytes).unwrap();
        assert_eq!(
            super::super::parse_entries(value, Uuid::nil()).unwrap(),
            entries
        );
    }

    #[test]
    fn empty_and_nil_replies_are_empty_pages() {
        assert!(xrange_entries(b"*0\r\n", Uuid::nil()).unwrap().is_empty());
        assert!(xrange_entries(b"*-1\r\n", Uuid::nil()).unwrap().is_empty());
    }

    #[test]
    fn errors_name_the_problem() {
        let err = xrange_entries(b"-WRONGTYPE not a stream\r\n", Uuid::nil())
            .unwrap_err()
            .to_string();
        assert!(err.contains("WRONGTYPE"), "{err}");
        let mut bytes = b"*1\r\n*2\r\n".to_vec();
        bulk(&mut bytes, "3-0");
        bytes.extend_from_slice(b"*2\r\n");
        bulk(&mut bytes, "body");
        bulk(&mut bytes, "x");
        let err = xrange_entries(&bytes, Uuid::nil()).unwrap_err().to_string();
        assert!(
            err.contains("entry 3-0") && err.contains("sender_id"),
            "{err}"
        );
        let truncated = &reply(&[("1-0", "hello")])[..20];
        assert!(xrange_entries(truncated, Uuid::nil()).is_err());
    }

    #[test]
    fn frame_end_is_found_however_the_reply_is_split() {
        let mut bytes = reply(&[("1-0", "hello"), ("1-1", "x\r\n*3\r\n"), ("9-9", "z")]);
        let full = bytes.len();
        bytes.extend_from_slice(b"+NEXT\r\n");
        for split in [1, 2, 3, 7, 64] {
            let mut frame = ReplyFrame::default();
            let mut end = None;
            let mut have = 0;
            while end.is_none() {
                have = (have + split).min(bytes.len());
                end = frame.complete(&bytes[..have]).unwrap();
                if end.is_none() {
                    assert!(have < full, "not complete at {have} of {full}");
                }
            }
            assert_eq!(end, Some(full), "split {split}");
        }
        let mut frame = ReplyFrame::default();
        assert_eq!(frame.complete(b"*0\r\n").unwrap(), Some(4));
        let mut frame = ReplyFrame::default();
        assert_eq!(frame.complete(b"$-1\r\n").unwrap(), Some(5));
        let mut frame = ReplyFrame::default();
        assert!(frame.complete(b"%1\r\n").is_err());
    }
}
