//! Lua scripts: each one is a single atomic step in Redis, which is the
//! whole point: the dedup key and the XADD can never be split by a crash or
//! a concurrent retry, and epoch bookkeeping can never race an append.

use std::sync::LazyLock;

use redis::Script;

/// Makes sure the conversation has an epoch, and rotates it when the stream
/// it was created with is gone (deleted or lost with Redis data) so clients
/// holding ids from the old stream are told with `gap: epoch_changed`.
///
/// KEYS: stream, meta. ARGV: candidate new epoch, meta TTL seconds.
/// Returns the current epoch.
const EPOCH_PRELUDE: &str = r#"
local function current_epoch(stream, meta, candidate, meta_ttl)
  local epoch = redis.call('HGET', meta, 'epoch')
  local lost = redis.call('EXISTS', stream) == 0 and redis.call('HGET', meta, 'has_stream') == '1'
  if (not epoch) or lost then
    epoch = candidate
    redis.call('HSET', meta, 'epoch', epoch, 'has_stream', '0')
  end
  redis.call('EXPIRE', meta, meta_ttl)
  return epoch
end
"#;

pub static ENSURE_EPOCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{EPOCH_PRELUDE}\nreturn current_epoch(KEYS[1], KEYS[2], ARGV[1], ARGV[2])"
    ))
});

/// Idempotent append. KEYS: stream, meta, dedup, appended signals.
/// ARGV: sender_id, client_msg_id, body, sent_at_ms, minid (retention),
/// dedup TTL s, candidate epoch, meta TTL s, length cap (0: none),
/// signals cap, widest body carried by a signal (bytes).
/// A fresh append also adds `{stream: KEYS[1]}` to the signals stream
/// (`keys::APPENDED_SIGNALS`), in the same atomic step, so a tailer that
/// has read the signals up to some id has seen a hint for every append
/// before it. When the body is at most ARGV[11] bytes the signal also
/// carries the entry (`id` and its fields) and `prev`, the stream's newest
/// id before this XADD (`0-0` if none), so a tailer whose cursor is `prev`
/// can dispatch it without reading the stream (`store::Inline`).
/// XADD takes one trim strategy, so the length cap is a second step (in
/// the same script, so nobody ever sees the stream over both bounds).
/// Returns {id, duplicate (0/1), epoch}.
///
/// Also keeps `widest_body` in the meta hash: the largest body in bytes
/// ever appended to the stream, set when the XADD creates the stream and
/// raised with every later append, so "every entry's body is at most
/// `widest_body`" holds whenever the field exists. Replay sizes its pages
/// from it (plain XRANGE, see `Store::read_page`). A stream created before
/// this field existed never gets it (its older bodies are unknown) and is
/// paged by `RANGE_BOUNDED` instead.
pub static APPEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"{EPOCH_PRELUDE}
local epoch = current_epoch(KEYS[1], KEYS[2], ARGV[7], ARGV[8])
local existing = redis.call('GET', KEYS[3])
if existing then
  return {{existing, 1, epoch}}
end
local fresh = redis.call('EXISTS', KEYS[1]) == 0
local carry = #ARGV[3] <= tonumber(ARGV[11])
local prev = '0-0'
if carry then
  local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
  if newest[1] then
    prev = newest[1][1]
  end
end
local id = redis.call('XADD', KEYS[1], 'MINID', ARGV[5], '*',
  'sender_id', ARGV[1], 'client_msg_id', ARGV[2], 'body', ARGV[3], 'sent_at_ms', ARGV[4])
local widest = redis.call('HGET', KEYS[2], 'widest_body')
if fresh or widest then
  if (not widest) or #ARGV[3] > tonumber(widest) then
    redis.call('HSET', KEYS[2], 'widest_body', #ARGV[3])
  end
end
if tonumber(ARGV[9]) > 0 then
  redis.call('XTRIM', KEYS[1], 'MAXLEN', '~', ARGV[9])
end
redis.call('HSET', KEYS[2], 'has_stream', '1')
redis.call('SET', KEYS[3], id, 'EX', ARGV[6])
if carry then
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[10], '*', 'stream', KEYS[1],
    'prev', prev, 'id', id, 'sender_id', ARGV[1], 'client_msg_id', ARGV[2],
    'body', ARGV[3], 'sent_at_ms', ARGV[4])
else
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[10], '*', 'stream', KEYS[1])
end
return {{id, 0, epoch}}
"#
    ))
});

/// Saves the sync state only if it moves the cursor forward (or the epoch
/// changed): two sockets of one device racing must never move a stored
/// cursor backwards. KEYS: sync key. ARGV: json, ms, seq, epoch, TTL s.
/// Returns 1 when written.
pub static SAVE_CURSOR: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local old = redis.call('GET', KEYS[1])
if old then
  local ok, state = pcall(cjson.decode, old)
  if ok and type(state) == 'table' and state['epoch'] == ARGV[4] and type(state['last_message_id']) == 'string' then
    local ms, seq = string.match(state['last_message_id'], '^(%d+)-(%d+)$')
    if ms then
      local oms, oseq, nms, nseq = tonumber(ms), tonumber(seq), tonumber(ARGV[2]), tonumber(ARGV[3])
      if oms > nms or (oms == nms and oseq >= nseq) then
        return 0
      end
    end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[5])
return 1
"#,
    )
});

/// XRANGE with a byte bound: entries from ARGV[1] to ARGV[2] (XRANGE
/// syntax, `(` for exclusive), at most ARGV[3] of them and, past the
/// first, at most ARGV[4] bytes of ids and fields. Read in small batches
/// so Redis never holds a large page either. Same reply shape as XRANGE.
/// Used only for streams whose widest body is unknown (see `APPEND`):
/// moving every entry through Lua tables costs Redis about ten times a
/// plain XRANGE of the same entries (6.4 vs 0.6 ms for 500 entries,
/// `INFO commandstats`, Redis 7.0).
pub static RANGE_BOUNDED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local start, stop = ARGV[1], ARGV[2]
local count, budget = tonumber(ARGV[3]), tonumber(ARGV[4])
local out, used = {}, 0
while #out < count do
  local want = math.min(count - #out, 32)
  local batch = redis.call('XRANGE', KEYS[1], start, stop, 'COUNT', want)
  for _, entry in ipairs(batch) do
    local size = #entry[1]
    for _, field in ipairs(entry[2]) do size = size + #field end
    if #out > 0 and used + size > budget then
      return out
    end
    used = used + size
    out[#out + 1] = entry
  end
  if #batch < want then
    break
  end
  start = '(' .. batch[#batch][1]
end
return out
"#,
    )
});
