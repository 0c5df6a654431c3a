-- Prelude of every MCP script that changes state (prepended by events::script).
-- A change bumps the log's revision and appends one event whose stream id is
-- `<revision>-0`, in the same atomic script as the change itself, so a
-- watcher that resumes from revision N reads exactly the events after N.
--
-- Every log also has an epoch (`{prefix}:{log}:epoch`): an id made by the
-- first write into an empty Redis (SET NX), carried on every event. When
-- Redis loses its data (FLUSHALL, a failover to an empty replica, a restore)
-- the epoch vanishes or changes, and every follower of the log (events.rs's
-- tail) notices it and tells its readers to reload. The epoch key is built
-- from the revision key (`…:revision` → `…:epoch`, same prefix, same hash
-- slot), so no script has to pass one more KEY.

local mcp_epoch = nil

-- The epoch of the log whose revision counter is `revision_key`, created
-- when absent: Redis's clock to the microsecond plus a random part.
local function mcp_log_epoch(revision_key)
  if mcp_epoch then
    return mcp_epoch
  end
  if string.sub(revision_key, -9) ~= ':revision' then
    error('mcp: revision key must end in :revision')
  end
  local epoch_key = string.sub(revision_key, 1, -9) .. 'epoch'
  local t = redis.call('TIME')
  local candidate = string.format('%s.%06d.%d', t[1], tonumber(t[2]), math.random(0, 2147483646))
  redis.call('SET', epoch_key, candidate, 'NX')
  mcp_epoch = redis.call('GET', epoch_key)
  return mcp_epoch
end

-- Bump and return the revision counter at `revision_key` (making the log's
-- epoch first when Redis has none).
local function mcp_next_revision(revision_key)
  mcp_log_epoch(revision_key)
  return redis.call('INCR', revision_key)
end

-- Append one event at stream id `<revision>-0`, trimming the stream to about `maxlen`.
local function mcp_append(stream_key, maxlen, revision, kind, scope, data)
  redis.call('XADD', stream_key, 'MAXLEN', '~', maxlen, revision .. '-0',
    'kind', kind, 'scope', scope, 'data', data, 'epoch', mcp_epoch or '')
end
