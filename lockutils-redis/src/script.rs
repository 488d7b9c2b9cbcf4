//! The Lua scripts: each one round trip, run atomically by the server.

/// Takes the lock: `SET key token NX PX ttl` (tooz's acquire), and on success increments the
/// fencing counter in the same script, so that no other acquisition can come between.
/// `KEYS = [lock key, counter key]`, `ARGV = [token, ttl in ms]`.
/// Returns `{1, fencing token}` when taken, `{0, PTTL of the key}` when busy.
pub(crate) const ACQUIRE: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, redis.call('INCR', KEYS[2])}
end
return {0, redis.call('PTTL', KEYS[1])}
";

/// Releases the lock if it still holds the caller's token (tooz's release), and announces the
/// release to waiters. `KEYS = [lock key]`, `ARGV = [token, channel]`. Returns 1 if released,
/// 0 if the key held another value or none.
pub(crate) const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], '')
  return 1
end
return 0
";

/// Re-sets the expiry if the key still holds the caller's token (tooz's extension).
/// `KEYS = [lock key]`, `ARGV = [token, ttl in ms]`. Returns 1 if extended, 0 otherwise.
pub(crate) const EXTEND: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
";
