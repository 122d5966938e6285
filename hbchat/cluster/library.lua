#!lua name=hbchat_cluster_1
--[[
The atomic parts of an hbchat cluster, as one Redis function library (docs/cluster.md).

Every function takes the cluster's meta key as its one key (KEYS[1] = "{NAME}:meta") and
derives the others from its prefix ("{NAME}:"), so all of them share one hash slot.  Time is
Redis's own (TIME), so the nodes' clocks never have to agree.
]]

local LAYOUT = 'hbchat-cluster-1'

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function prefix_of(meta)
  return string.sub(meta, 1, #meta - 4)
end

-- The key set's layout, epoch and seq; made here when missing (a new cluster, or Redis lost
-- its data), its seq then starting at `floor` (the highest seq the calling node has seen).
local function ensure(meta, candidate, floor)
  local v = redis.call('HMGET', meta, 'layout', 'epoch', 'seq')
  if not v[1] then
    redis.call('HSET', meta, 'layout', LAYOUT, 'epoch', candidate, 'seq', floor)
    return candidate, floor
  end
  if v[1] ~= LAYOUT then
    return redis.error_reply('WRONGLAYOUT the keys of this cluster name have layout ' .. v[1])
  end
  local seq = tonumber(v[3])
  if seq < floor then
    -- Redis is behind what a node delivered: it lost data; seqs never go back.
    redis.call('HSET', meta, 'seq', floor)
    seq = floor
  end
  return v[2], seq
end

-- Events the log keeps beyond --history, so that a node that falls behind in a burst
-- (a batch can carry thousands) still reads every event; RESUME replays only --history.
local RETAIN = 100000

local function append(P, meta, history, kind, nick, text)
  local seq = redis.call('HINCRBY', meta, 'seq', 1)
  local minid = seq - history - RETAIN + 1
  if minid < 0 then minid = 0 end
  redis.call('XADD', P .. 'log', 'MINID', '~', tostring(minid), seq .. '-0', 'k', kind, 'n', nick, 't', text)
  return seq
end

local function control(P, meta, kind, att, nick, text)
  local seq = redis.call('HGET', meta, 'seq')
  redis.call('XADD', P .. 'log', seq .. '-*', 'k', kind, 'a', att, 'n', nick, 't', text)
end

-- The session of `tok` ends now: its keys go, and its nick with them if it still holds it.
local function forget(P, tok)
  local s = P .. 's:' .. tok
  local key = redis.call('HGET', s, 'key')
  redis.call('DEL', s)
  if key and redis.call('GET', P .. 'n:' .. key) == tok then
    redis.call('DEL', P .. 'n:' .. key)
  end
end

-- `tok` goes into grace until `expiry` (ms); beyond `maxgrace` sessions in grace across the
-- cluster (--max-grace), the oldest ones end early, as if their grace had run out.
local function into_grace(P, tok, expiry, maxgrace)
  local g = P .. 'grace'
  redis.call('ZREMRANGEBYSCORE', g, '-inf', now_ms())
  redis.call('ZADD', g, expiry, tok)
  local over = redis.call('ZCARD', g) - maxgrace
  if over > 0 then
    for _, old in ipairs(redis.call('ZRANGE', g, 0, over - 1)) do
      forget(P, old)
      redis.call('ZREM', g, old)
    end
  end
end

-- A session's connection ended: LEFT for everyone, and grace (resumable) or the end.
-- With `att`, only if the session is still held by that connection.
local function detach(P, meta, history, maxgrace, tok, att, word, resumable)
  local s = P .. 's:' .. tok
  local f = redis.call('HMGET', s, 'nick', 'node', 'att', 'g', 'key')
  if not f[1] then return 0 end
  if att and f[3] ~= att then return 0 end
  if f[2] == '' then return 0 end
  redis.call('SREM', P .. 'node:' .. f[2], tok)
  redis.call('HDEL', P .. 'present', f[5])
  local seq = append(P, meta, history, 'L', f[1], word)
  if resumable then
    redis.call('HSET', s, 'node', '', 'att', '')
    redis.call('PEXPIRE', s, f[4])
    redis.call('PEXPIRE', P .. 'n:' .. f[5], f[4])
    into_grace(P, tok, now_ms() + tonumber(f[4]), maxgrace)
  else
    redis.call('DEL', s, P .. 'n:' .. f[5])
  end
  return seq
end

-- hb_join(meta; incarnation, timeout_ms, candidate_epoch, floor)
-- A node (re)joins: its lease, and what it starts from: epoch, seq, the last log entry's ID,
-- and the nicks present.
local function hb_join(keys, args)
  local meta = keys[1]
  local P = prefix_of(meta)
  local epoch, seq = ensure(meta, args[3], tonumber(args[4]))
  if type(epoch) == 'table' then return epoch end
  redis.call('ZADD', P .. 'nodes', now_ms() + tonumber(args[2]), args[1])
  local last = redis.call('XREVRANGE', P .. 'log', '+', '-', 'COUNT', 1)
  local last_id = seq .. '-0'
  if last[1] then last_id = last[1][1] end
  return {epoch, seq, last_id, redis.call('HVALS', P .. 'present')}
end

-- hb_tick(meta; incarnation, timeout_ms, candidate_epoch, floor, history, comeback_ms, max_grace)
-- Every second: renew this node's lease ('dead' if it was declared dead), then declare dead the
-- nodes whose lease ran out, each exactly once (ZREM is the claim), announcing LEFT timeout for
-- each of their users, whose sessions go into grace.  A node whose own lease had run out
-- (Redis was down) declares nobody dead on this tick.
local function hb_tick(keys, args)
  local meta = keys[1]
  local P = prefix_of(meta)
  local inc = args[1]
  local now = now_ms()
  local own = redis.call('ZSCORE', P .. 'nodes', inc)
  if not own then return {'dead'} end
  local epoch, seq = ensure(meta, args[3], tonumber(args[4]))
  if type(epoch) == 'table' then return epoch end
  local timeout = tonumber(args[2])
  if tonumber(own) < now then
    -- Our lease ran out and nobody declared us dead: nobody was ticking, so Redis itself was
    -- away (or every node was cut off).  Every lease that ran out meanwhile gets the time
    -- its node needs to come back (args[6]: the longest reconnect wait) before it counts.
    local expired = redis.call('ZRANGEBYSCORE', P .. 'nodes', '-inf', '(' .. now)
    for _, node in ipairs(expired) do
      redis.call('ZADD', P .. 'nodes', 'XX', now + timeout + tonumber(args[6]), node)
    end
  end
  redis.call('ZADD', P .. 'nodes', 'XX', now + timeout, inc)
  local announced = 0
  if tonumber(own) >= now then
    local history = tonumber(args[5])
    local dead = redis.call('ZRANGEBYSCORE', P .. 'nodes', '-inf', '(' .. now, 'LIMIT', 0, 16)
    for _, node in ipairs(dead) do
      if redis.call('ZREM', P .. 'nodes', node) == 1 then
        local set = P .. 'node:' .. node
        for _, tok in ipairs(redis.call('SMEMBERS', set)) do
          if detach(P, meta, history, tonumber(args[7]), tok, nil, 'timeout', true) > 0 then
            announced = announced + 1
          end
        end
        redis.call('DEL', set)
      end
    end
  end
  return {'ok', epoch, redis.call('HGET', meta, 'seq'), redis.call('ZCARD', P .. 'nodes'), announced}
end

-- hb_part(meta; incarnation): a node stops (its users have left already).
local function hb_part(keys, args)
  local P = prefix_of(keys[1])
  redis.call('ZREM', P .. 'nodes', args[1])
  redis.call('DEL', P .. 'node:' .. args[1])
  return 1
end

-- hb_batch(meta; incarnation, candidate_epoch, floor, history, max_grace, op...)
-- Everything one node asks in one reactor turn, in order, atomically: one round trip.
-- Ops (their arguments follow the letter):
--   N nick key token att grace_ms   register: the JOIN's seq, or 0 (nick taken)
--   R token att last_seq             resume: {0} unknown, {-1} last_seq ahead of the chat,
--                                    {1, nick, seq, previous att on this node or '', entries}
--   M token att text                 say: the MSG's seq (0: the session is no longer held)
--   L token att word resumable       leave: the LEFT's seq (0: nothing to announce)
--   T from_nick key text             tell: 1 if the nick is attached somewhere, else 0
local function hb_batch(keys, args)
  local meta = keys[1]
  local P = prefix_of(meta)
  local inc = args[1]
  if not redis.call('ZSCORE', P .. 'nodes', inc) then return {'dead'} end
  local epoch, seq = ensure(meta, args[2], tonumber(args[3]))
  if type(epoch) == 'table' then return epoch end
  local history = tonumber(args[4])
  local maxgrace = tonumber(args[5])
  local replies = {'ok', epoch}
  local i = 6
  while i <= #args do
    local op = args[i]
    if op == 'N' then
      local nick, key, tok, att, grace = args[i + 1], args[i + 2], args[i + 3], args[i + 4], args[i + 5]
      i = i + 6
      if redis.call('EXISTS', P .. 'n:' .. key) == 1 then
        table.insert(replies, 0)
      else
        redis.call('HSET', P .. 's:' .. tok, 'nick', nick, 'key', key, 'node', inc, 'att', att, 'g', grace)
        redis.call('SET', P .. 'n:' .. key, tok)
        redis.call('SADD', P .. 'node:' .. inc, tok)
        redis.call('HSET', P .. 'present', key, nick)
        table.insert(replies, append(P, meta, history, 'J', nick, ''))
      end
    elseif op == 'R' then
      local tok, att, last = args[i + 1], args[i + 2], tonumber(args[i + 3])
      i = i + 4
      local s = P .. 's:' .. tok
      local f = redis.call('HMGET', s, 'nick', 'node', 'att', 'key')
      local now_seq = tonumber(redis.call('HGET', meta, 'seq'))
      if not f[1] then
        table.insert(replies, {0})
      elseif last > now_seq then
        table.insert(replies, {-1})
      else
        local previous = ''
        if f[2] ~= '' then
          redis.call('SREM', P .. 'node:' .. f[2], tok)
          if f[2] == inc then
            previous = f[3]
          else
            control(P, meta, 'R', f[3], f[1], '')
          end
        end
        redis.call('HSET', s, 'node', inc, 'att', att)
        redis.call('PERSIST', s)
        redis.call('PERSIST', P .. 'n:' .. f[4])
        redis.call('SADD', P .. 'node:' .. inc, tok)
        local from = math.max(last + 1, now_seq - history + 1)
        local entries = redis.call('XRANGE', P .. 'log', tostring(from), tostring(now_seq))
        if f[2] == '' then
          redis.call('ZREM', P .. 'grace', tok)
          redis.call('HSET', P .. 'present', f[4], f[1])
          append(P, meta, history, 'J', f[1], '')
        end
        table.insert(replies, {1, f[1], now_seq, previous, entries})
      end
    elseif op == 'M' then
      local tok, att, text = args[i + 1], args[i + 2], args[i + 3]
      i = i + 4
      local f = redis.call('HMGET', P .. 's:' .. tok, 'nick', 'att')
      if f[1] and f[2] == att then
        table.insert(replies, append(P, meta, history, 'M', f[1], text))
      else
        table.insert(replies, 0)
      end
    elseif op == 'L' then
      local tok, att, word, resumable = args[i + 1], args[i + 2], args[i + 3], args[i + 4]
      i = i + 5
      table.insert(replies, detach(P, meta, history, maxgrace, tok, att, word, resumable == '1'))
    elseif op == 'T' then
      local from, key, text = args[i + 1], args[i + 2], args[i + 3]
      i = i + 4
      local tok = redis.call('GET', P .. 'n:' .. key)
      local att = tok and redis.call('HGET', P .. 's:' .. tok, 'att')
      if att and att ~= '' then
        control(P, meta, 'P', att, from, text)
        table.insert(replies, 1)
      else
        table.insert(replies, 0)
      end
    else
      return redis.error_reply('BADOP unknown batch op ' .. tostring(op))
    end
  end
  return replies
end

redis.register_function('hb_join', hb_join)
redis.register_function('hb_tick', hb_tick)
redis.register_function('hb_part', hb_part)
redis.register_function('hb_batch', hb_batch)
