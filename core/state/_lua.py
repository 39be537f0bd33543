"""Lua scripts for RedisState. Each public operation is one EVALSHA, i.e. one round trip.

Time is ARGV[1] (seconds, float) or, when empty, the server's TIME, so every router process
shares one clock. Budget values are compared as exact decimal strings (``icmp``): Lua numbers
are doubles, and picodollar sums pass 2**53 at about $9,007; values move only by SET and
INCRBY (exact int64; ``incrby`` stops at the int64 edge instead of failing the script).
"""

from __future__ import annotations

_ICMP = """
-- compare two decimal integer strings exactly (no leading zeros; '-' for a negative)
local function icmp(a, b)
  local na, nb = string.sub(a, 1, 1) == '-', string.sub(b, 1, 1) == '-'
  if na ~= nb then return na and -1 or 1 end
  if na then a, b = string.sub(b, 2), string.sub(a, 2) end
  if #a ~= #b then return #a < #b and -1 or 1 end
  if a == b then return 0 end
  return a < b and -1 or 1
end
"""

_PRELUDE = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
-- INCRBY that stops at the int64 bounds instead of failing mid-script (a counter past
-- $9,223,372.036854775807 in picodollars: every limit is below it, see max_limit_usd)
local function incrby(k, amount)
  local r = redis.pcall('INCRBY', k, amount)
  if type(r) == 'table' and r.err then
    if not string.find(r.err, 'overflow', 1, true) then error(r) end
    local edge = string.sub(amount, 1, 1) == '-' and '-9223372036854775808'
      or '9223372036854775807'
    redis.call('SET', k, edge, 'KEEPTTL')
  end
end
local function clock(arg)
  local t = tonumber(arg)
  if t then return t end
  local tm = redis.call('TIME')
  return tonumber(tm[1]) + tonumber(tm[2]) / 1000000
end
"""

# KEYS: per rate item 1 key (token bucket) or 2 (sliding window: zset, meta hash), then one
#       key per budget item, then (when an epoch is given) the epoch key.
# ARGV: now, n_rates, n_budgets; per rate: alg ('t'|'w'; 'T'|'W' for a settling item, whose
#       charge settle corrects), limit, window_s, capacity, cost, ttl_ms; per budget:
#       threshold (limit - amount, '' = never block), amount, ttl_ms;
#       then optionally the epoch the caller expects (Redis restarted empty: reason 'epoch';
#       '' = none), then optionally admit_if's condition: n_over, per bound its budget item
#       (1-based) and value, n_under, the same (reason 'condition' when it fails).
# Returns {ok, reason, failed_index (0-based), retry_after ('-1' = never), value_1..value_n};
# admitted with settling items, then the time used and per settling item its window entry's
# seq (0 for a token bucket).
ADMIT = (
    _PRELUDE
    + _ICMP
    + """

local now = clock(ARGV[1])
local nr, nb = tonumber(ARGV[2]), tonumber(ARGV[3])
local epoch, ekeys = ARGV[4 + 6 * nr + 3 * nb], 0
if epoch and epoch ~= '' then  -- the counters this router trusts are still there
  ekeys = 1
  if redis.call('GET', KEYS[#KEYS]) ~= epoch then return {0, 'epoch', -1, ''} end
end
local bfirst = #KEYS - nb - ekeys
local values = {}
if nb > 0 then
  local bkeys = {}
  for j = 1, nb do bkeys[j] = KEYS[bfirst + j] end
  values = redis.call('MGET', unpack(bkeys))
end
local function answer(ok, reason, idx, retry)
  local out = {ok, reason, idx, retry}
  for j = 1, nb do out[4 + j] = values[j] end
  return out
end

local c = 4 + 6 * nr + 3 * nb + 1
local nover = tonumber(ARGV[c] or '')
if nover then  -- admit_if: some value above its 'over' bound, none above its 'under' bound
  local hit = false
  for n = 1, nover do
    if icmp(values[tonumber(ARGV[c + 2 * n - 1])] or '0', ARGV[c + 2 * n]) > 0 then hit = true end
  end
  c = c + 2 * nover + 1
  for n = 1, tonumber(ARGV[c]) do
    if icmp(values[tonumber(ARGV[c + 2 * n - 1])] or '0', ARGV[c + 2 * n]) > 0 then hit = false end
  end
  if not hit then return answer(0, 'condition', -1, '') end
end

local plans = {}
local kc, a = 1, 4
local settling = false
for i = 1, nr do
  local alg, limit, window = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local settles = alg == 'T' or alg == 'W'
  if settles then
    settling = true
    alg = string.lower(alg)
  end
  local cap, cost, ttl = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4]), ARGV[a + 5]
  if alg == 't' then
    local k = KEYS[kc]
    kc = kc + 1
    local rate = limit / window
    local st = redis.call('HMGET', k, 't', 'ts')
    local tokens, ts = cap, now
    if st[1] then
      local last = tonumber(st[2])
      tokens = math.min(cap, tonumber(st[1]) + math.max(0, now - last) * rate)
      ts = math.max(last, now)
    end
    if cost > tokens + 1e-9 then
      if cost > cap then return answer(0, 'rate', i - 1, '-1') end
      return answer(0, 'rate', i - 1, string.format('%.17g', (cost - tokens) / rate))
    end
    plans[i] = {'t', k, math.max(0, tokens - cost), ts, ttl, 0, settles}
  else
    local k, m = KEYS[kc], KEYS[kc + 1]
    kc = kc + 2
    local cut = now - window
    local total = tonumber(redis.call('HGET', m, 'sum') or '0')
    if total ~= 0 and redis.call('EXISTS', k) == 0 then total = 0 end
    local old = redis.call('ZRANGEBYSCORE', k, '-inf', cut)
    if #old > 0 then
      for _, member in ipairs(old) do
        total = total - tonumber(string.match(member, ':(%d+)$'))
      end
      redis.call('ZREMRANGEBYSCORE', k, '-inf', cut)
      redis.call('HSET', m, 'sum', total)
    end
    if total + cost > limit then
      if cost > limit then return answer(0, 'rate', i - 1, '-1') end
      local live = redis.call('ZRANGEBYSCORE', k, string.format('(%.17g', cut), '+inf',
        'WITHSCORES')
      local freed, retry = 0, window
      for n = 1, #live, 2 do
        freed = freed + tonumber(string.match(live[n], ':(%d+)$'))
        if total - freed + cost <= limit then
          retry = math.max(0, tonumber(live[n + 1]) + window - now)
          break
        end
      end
      return answer(0, 'rate', i - 1, string.format('%.17g', retry))
    end
    plans[i] = {'w', k, m, ARGV[a + 4], ttl, cost, settles}
  end
  a = a + 6
end

for j = 1, nb do
  local th = ARGV[a + 3 * (j - 1)]
  if th ~= '' and icmp(values[j] or '0', th) > 0 then
    return answer(0, 'budget', j - 1, '')
  end
end

local seqs = {}
for i = 1, nr do
  local p = plans[i]
  local seq = 0
  if p[1] == 't' then
    redis.call('HSET', p[2], 't', p[3], 'ts', p[4])
    redis.call('PEXPIRE', p[2], p[5])
  elseif p[6] > 0 then
    seq = redis.call('HINCRBY', p[3], 'seq', 1)
    redis.call('ZADD', p[2], now, seq .. ':' .. p[4])
    redis.call('HINCRBY', p[3], 'sum', p[4])
    redis.call('PEXPIRE', p[2], p[5])
    redis.call('PEXPIRE', p[3], p[5])
  end
  if p[7] then seqs[#seqs + 1] = seq end
end
for j = 1, nb do
  local k, amount, ttl = KEYS[bfirst + j], ARGV[a + 3 * (j - 1) + 1], ARGV[a + 3 * (j - 1) + 2]
  incrby(k, amount)
  if ttl ~= '0' then redis.call('PEXPIRE', k, ttl) end
end
local out = answer(1, '', -1, '')
if settling then
  out[#out + 1] = string.format('%.17g', now)
  for n = 1, #seqs do out[#out + 1] = seqs[n] end
end
return out
"""
)

# KEYS: budget keys, then per rate fix 1 key (token bucket) or 2 (sliding window: zset, meta).
# ARGV: n_budgets, per budget delta, ttl_ms ('0' = keep); then (with rate fixes) now ('' =
#       the server's TIME) and per fix: 't', limit, window_s, capacity, actual - cost, ttl_ms
#       (a token bucket, refilled to now, gets the difference back, within [0, capacity]) or
#       'w', seq, cost, actual (the window entry seq:cost becomes seq:actual, gone at 0; its
#       sum follows; nothing when the entry already left the window).
# Returns the budgets' new values.
_SETTLE_BODY = """
local function settle()
  local nb = tonumber(ARGV[1])
  local out = {}
  for j = 1, nb do
    incrby(KEYS[j], ARGV[2 * j])
    if ARGV[2 * j + 1] ~= '0' then redis.call('PEXPIRE', KEYS[j], ARGV[2 * j + 1]) end
    out[j] = redis.call('GET', KEYS[j])  -- a string: INCRBY's reply would pass through a double
  end
  local a = 2 * nb + 2
  if #ARGV < a then return out end
  local now = clock(ARGV[a])
  local kc = nb + 1
  a = a + 1
  while a <= #ARGV do
    if ARGV[a] == 't' then
      local k = KEYS[kc]
      kc = kc + 1
      local limit, window, cap = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
      local diff, ttl = tonumber(ARGV[a + 4]), ARGV[a + 5]
      a = a + 6
      local rate = limit / window
      local st = redis.call('HMGET', k, 't', 'ts')
      if st[1] or diff > 0 then  -- an expired bucket is full: nothing to give back
        local tokens, ts = cap, now
        if st[1] then
          local last = tonumber(st[2])
          tokens = math.min(cap, tonumber(st[1]) + math.max(0, now - last) * rate)
          ts = math.max(last, now)
        end
        tokens = math.min(cap, math.max(0, tokens - diff))
        redis.call('HSET', k, 't', tokens, 'ts', ts)
        redis.call('PEXPIRE', k, ttl)
      end
    else
      local k, m = KEYS[kc], KEYS[kc + 1]
      kc = kc + 2
      local seq, cost, actual = ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 3])
      a = a + 4
      local member = seq .. ':' .. cost
      local score = redis.call('ZSCORE', k, member)
      if score then
        redis.call('ZREM', k, member)
        if actual > 0 then redis.call('ZADD', k, score, seq .. ':' .. ARGV[a - 1]) end
        redis.call('HINCRBY', m, 'sum', actual - tonumber(cost))
      end
    end
  end
  return out
end
"""

SETTLE = _PRELUDE + _SETTLE_BODY + "return settle()\n"

# SETTLE, and then (KEYS: the same, then a circuit breaker hash) BREAKER_RECORD's success: the
# breaker is closed (deleted). A call's settle and its breaker record in one round trip.
# Returns the budgets' new values, as SETTLE.
SETTLE_CLOSE = (
    _PRELUDE
    + _SETTLE_BODY
    + """
local out = settle()
redis.call('DEL', KEYS[#KEYS])
return out
"""
)

# KEYS: breaker hash. ARGV: now. Claims the single half-open probe atomically.
BREAKER_ALLOW = (
    _PRELUDE
    + """
local now = clock(ARGV[1])
local st = redis.call('HMGET', KEYS[1], 's', 'at', 'cd', 'probe')
if not st[1] or st[1] == 'closed' then return 'closed' end
local since = tonumber(st[1] == 'open' and st[2] or st[4])
if now >= since + tonumber(st[3]) then
  redis.call('HSET', KEYS[1], 's', 'half_open', 'probe', now)
  return 'half_open'
end
return 'open'
"""
)

# KEYS: breaker hashes. ARGV: now. BREAKER_ALLOW for each key, in one round trip.
BREAKER_ALLOW_MANY = (
    _PRELUDE
    + """
local now = clock(ARGV[1])
local out = {}
for i = 1, #KEYS do
  local st = redis.call('HMGET', KEYS[i], 's', 'at', 'cd', 'probe')
  if not st[1] or st[1] == 'closed' then
    out[i] = 'closed'
  else
    local since = tonumber(st[1] == 'open' and st[2] or st[4])
    if now >= since + tonumber(st[3]) then
      redis.call('HSET', KEYS[i], 's', 'half_open', 'probe', now)
      out[i] = 'half_open'
    else
      out[i] = 'open'
    end
  end
end
return out
"""
)

# KEYS: cached value, counters hash. ARGV: hit field, miss field. GET, and count the lookup.
CACHE_GET_COUNTED = """
local v = redis.call('GET', KEYS[1])
redis.call('HINCRBY', KEYS[2], v and ARGV[1] or ARGV[2], 1)
return v
"""

# KEYS: breaker hash. ARGV: now, success ('1'|'0'), threshold, cooldown_s, ttl_ms.
BREAKER_RECORD = (
    _PRELUDE
    + """
if ARGV[2] == '1' then
  redis.call('DEL', KEYS[1])
  return 'closed'
end
local now = clock(ARGV[1])
local st = redis.call('HMGET', KEYS[1], 's', 'f')
local s, f = st[1] or 'closed', tonumber(st[2] or '0') + 1
redis.call('HSET', KEYS[1], 'f', f, 'cd', ARGV[4])
if s == 'half_open' or (s == 'closed' and f >= tonumber(ARGV[3])) then
  s = 'open'
  redis.call('HSET', KEYS[1], 's', 'open', 'at', now)
elseif not st[1] then
  redis.call('HSET', KEYS[1], 's', 'closed')
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return s
"""
)

# KEYS: per item the budget key K and its committed key K:c. ARGV: per item floor, ttl_ms.
# Raise K:c to at least floor and K by as much (K never below K:c); returns each K:c as it
# was (the caller works out what was added). Values are decimal strings moved by SET and
# INCRBY/DECRBY only, never through a Lua number (a double: inexact past 2**53 pUSD, $9,007).
RAISE = (
    _PRELUDE
    + _ICMP
    + """
local out = {}
for j = 1, #KEYS / 2 do
  local k, kc = KEYS[2 * j - 1], KEYS[2 * j]
  local floor, ttl = ARGV[2 * j - 1], ARGV[2 * j]
  local c = redis.call('GET', kc) or '0'
  if icmp(floor, c) > 0 then
    redis.call('SET', kc, floor, 'KEEPTTL')
    if c ~= '0' then  -- K - c, then + floor: K + (floor - c), exactly
      incrby(k, string.sub(c, 1, 1) == '-' and string.sub(c, 2) or '-' .. c)
    end
    incrby(k, floor)
  end
  local now_c = redis.call('GET', kc) or '0'
  if icmp(redis.call('GET', k) or '0', now_c) < 0 then redis.call('SET', k, now_c, 'KEEPTTL') end
  if ttl ~= '0' then
    redis.call('PEXPIRE', k, ttl)
    redis.call('PEXPIRE', kc, ttl)
  end
  out[j] = c
end
return out
"""
)

# KEYS: a home's share hash, the homes hash.
# ARGV: home id, now (epoch seconds, names the home in the homes hash), ttl_ms ('0' = none),
#       then field, value pairs: the home's whole share, replacing what it held (one step, so a
#       reader never sees it half written).
PUT_SHARES = """
redis.call('DEL', KEYS[1])
local n = #ARGV
for i = 4, n, 1000 do
  redis.call('HSET', KEYS[1], unpack(ARGV, i, math.min(n, i + 999)))
end
if n >= 5 and ARGV[3] ~= '0' then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return n >= 5 and (n - 3) / 2 or 0
"""
