-- Prelude of every MCP script that changes state (prepended by events::script).
-- A change bumps the log's revision and appends one event whose stream id is
-- `<revision>-0`, in the same atomic script as the change itself, so a
-- watcher that resumes from revision N reads exactly the events after N.

-- Bump and return the revision counter at `revision_key`.
local function mcp_next_revision(revision_key)
  return redis.call('INCR', revision_key)
end

-- Append one event at stream id `<revision>-0`, trimming the stream to about `maxlen`.
local function mcp_append(stream_key, maxlen, revision, kind, scope, data)
  redis.call('XADD', stream_key, 'MAXLEN', '~', maxlen, revision .. '-0',
    'kind', kind, 'scope', scope, 'data', data)
end
