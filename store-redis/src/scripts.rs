//! The Lua scripts that make each store operation one atomic step on the server.
//!
//! A value is `<tag>:<token>`: `h` a live claim, `d` handled, `x` dead-lettered. The key's
//! expiry is the lease (for `h`) or the retention (for `d` and `x`), so Redis itself drops
//! lapsed claims and old markers. `redis::Script` sends them by digest and falls back to the
//! full text when the server does not know it (after a restart).

use std::sync::LazyLock;

use redis::Script;

/// KEYS[1] entry; ARGV[1] token, ARGV[2] lease in ms. Returns `{tag, pttl}`: tag `a` when the
/// claim was taken, otherwise the current value's tag and its time left.
pub(crate) static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('SET', KEYS[1], 'h:' .. ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {'a', 0}
end
local value = redis.call('GET', KEYS[1])
return {string.sub(value, 1, 1), redis.call('PTTL', KEYS[1])}
",
    )
});

/// KEYS[1] entry; ARGV[1] token, ARGV[2] lease in ms. Returns 1 when the token's claim was
/// extended (or the token already finished it), 0 when another holds it or it is gone.
pub(crate) static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local value = redis.call('GET', KEYS[1])
if value == 'h:' .. ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if value == 'd:' .. ARGV[1] or value == 'x:' .. ARGV[1] then
  return 1
end
return 0
",
    )
});

/// KEYS[1] entry; ARGV[1] token, ARGV[2] outcome tag, ARGV[3] retention in ms. Records the
/// outcome when the token holds the entry or the entry is gone (lapsed, nobody took it);
/// returns 0 when another token holds or finished it.
pub(crate) static COMPLETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local value = redis.call('GET', KEYS[1])
if value and string.sub(value, 3) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2] .. ':' .. ARGV[1], 'PX', ARGV[3])
return 1
",
    )
});

/// KEYS[1] entry; ARGV[1] token. Deletes the entry when the token holds a live claim on it.
pub(crate) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == 'h:' .. ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

/// KEYS[1] entry. Deletes a dead-letter marker; returns 1 when there was one.
pub(crate) static REOPEN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local value = redis.call('GET', KEYS[1])
if value and string.sub(value, 1, 2) == 'x:' then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});
