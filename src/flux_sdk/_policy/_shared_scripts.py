"""The Lua scripts `SharedLimit` runs in Redis, each one atomic.

Every script reads the time from Redis itself (``TIME``), so processes on machines whose
clocks disagree still agree on who holds a lease and when the next slot is. Times are
whole microseconds (``ustime``), well inside the 2**53 a Lua number holds exactly, and
are written back with ``%.0f`` so no digit is lost to Lua's 14-digit default.
"""

from __future__ import annotations

__all__ = ["ACQUIRE", "CUT", "GIVE_BACK", "RELEASE", "RENEW", "RESERVE", "WIN"]

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
"""

# Redis restarted empty (or lost the keys) while processes held leases: they put theirs
# back at their next renewal, so for one renewal period no new lease is given. The epoch
# key marks a Redis that has seen this limit; a caller that saw it before (known=1) and
# finds it gone with the leases opens that window (recover_us) and holds it in the key.
# KEYS: leases, epoch. ARGV: ..., known, recover_us (the last two of each script below).
_EPOCH = """
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = 0
  if ARGV[#ARGV - 1] == '1' and redis.call('EXISTS', KEYS[1]) == 0 then
    epoch = now + tonumber(ARGV[#ARGV])
  end
  redis.call('SET', KEYS[2], string.format('%.0f', epoch))
end
local recovering = tonumber(epoch) - now
"""

# KEYS: leases (sorted set: lease id -> expiry), epoch. ARGV: limit, lease_us, lease id,
# known, recover_us. 0 when the lease was taken (or was already held: a retried script);
# else the microseconds until the earliest lease expires or the window above ends.
ACQUIRE = (
    _NOW
    + _EPOCH
    + """
if redis.call('ZSCORE', KEYS[1], ARGV[3]) then
  redis.call('ZADD', KEYS[1], string.format('%.0f', now + tonumber(ARGV[2])), ARGV[3])
  return 0
end
if recovering > 0 then return math.max(1, math.floor(recovering)) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now))
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], string.format('%.0f', now + tonumber(ARGV[2])), ARGV[3])
  return 0
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(first[2]) - now)
"""
)

# KEYS: leases, epoch, released. ARGV: lease_us, lease id, known, recover_us. Extends the
# lease, or puts it back when Redis lost it (restarted empty): a request still running
# keeps counting against the limit. A lease given back is not put back: a renewal sent
# just before the release can reach Redis after it (on another connection). 0 then.
RENEW = (
    _NOW
    + _EPOCH
    + """
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) and redis.call('ZSCORE', KEYS[3], ARGV[2]) then
  return 0
end
return redis.call('ZADD', KEYS[1], 'CH', string.format('%.0f', now + tonumber(ARGV[1])),
                  ARGV[2])
"""
)

# KEYS: leases, freed (a list that wakes one waiter per freed lease), released (lease id
# -> when, kept a lease's life so a late renewal cannot revive it). ARGV: lease id,
# limit, lease_us.
RELEASE = (
    _NOW
    + """
redis.call('ZADD', KEYS[3], string.format('%.0f', now), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', string.format('%.0f', now - tonumber(ARGV[3])))
redis.call('PEXPIRE', KEYS[3], math.ceil(tonumber(ARGV[3]) / 1000))
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('RPUSH', KEYS[2], '1')
  redis.call('LTRIM', KEYS[2], -tonumber(ARGV[2]), -1)
  redis.call('PEXPIRE', KEYS[2], 60000)
end
return 0
"""
)

# A virtual-time token bucket (GCRA): the next free slot is kept in Redis; each caller
# takes the next one and is told how long to sleep until it.
# KEYS: next slot, rate state (hash: current, cut_at). ARGV: rate, burst.
# Returns {wait_us, interval_us, current rate}.
RESERVE = (
    _NOW
    + """
local rate = tonumber(ARGV[1])
local current = tonumber(redis.call('HGET', KEYS[2], 'current') or ARGV[1])
if current < rate then rate = current end
local interval = 1000000 / rate
local nxt = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = math.max(nxt, now - (tonumber(ARGV[2]) - 1) * interval)
local after = slot + interval
redis.call('SET', KEYS[1], string.format('%.0f', after), 'PX',
           math.ceil((after - now) / 1000) + 60000)
return {math.floor(math.max(0, slot - now)), math.floor(interval), tostring(rate)}
"""
)

# A caller cancelled before its slot gives it back. KEYS: next slot. ARGV: interval_us.
GIVE_BACK = """
local nxt = redis.call('GET', KEYS[1])
if nxt then
  redis.call('SET', KEYS[1], string.format('%.0f', tonumber(nxt) - tonumber(ARGV[1])), 'KEEPTTL')
end
return 0
"""

# A 429: halve the shared rate (at most once a second, down to min_rate) and keep every
# process from sending before the host's Retry-After has passed.
# KEYS: next slot, rate state. ARGV: rate, min_rate, retry_after_us. Returns the rate.
CUT = (
    _NOW
    + """
local current = tonumber(redis.call('HGET', KEYS[2], 'current') or ARGV[1])
local cut_at = tonumber(redis.call('HGET', KEYS[2], 'cut_at') or '0')
if now - cut_at >= 1000000 then
  current = math.max(tonumber(ARGV[2]), current / 2)
  redis.call('HSET', KEYS[2], 'current', tostring(current), 'cut_at', string.format('%.0f', now))
  redis.call('PEXPIRE', KEYS[2], 3600000)
end
local pause = tonumber(ARGV[3])
if pause > 0 then
  local nxt = tonumber(redis.call('GET', KEYS[1]) or '0')
  if nxt < now + pause then
    redis.call('SET', KEYS[1], string.format('%.0f', now + pause), 'PX',
               math.ceil(pause / 1000) + 60000)
  end
end
return tostring(current)
"""
)

# A success wins back a twentieth of the configured rate. KEYS: rate state. ARGV: rate.
WIN = """
local current = redis.call('HGET', KEYS[1], 'current')
if not current then return ARGV[1] end
current = tonumber(current) + tonumber(ARGV[1]) / 20
if current >= tonumber(ARGV[1]) then
  redis.call('HDEL', KEYS[1], 'current')
  return ARGV[1]
end
redis.call('HSET', KEYS[1], 'current', tostring(current))
return tostring(current)
"""
