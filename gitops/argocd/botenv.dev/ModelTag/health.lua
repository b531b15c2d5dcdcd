-- Argo CD health check for botenv.dev/ModelTag.
--
-- A tag has one condition, Ready, and status.observedGeneration; the condition carries the
-- observedGeneration it was computed from.
--
--   Healthy      Ready=True for the current generation: spec.model was found in storage
--   Progressing  no status yet, or the status describes an older generation of the spec, or
--                Ready=False for a cause that botenv retries by itself (storage unreachable,
--                the storage Secret not readable right now)
--   Degraded     Ready=False for any other reason (ModelNotFound, StorageAccessDenied,
--                SecretMissing, InvalidSpec, ...): the tag was not moved and needs a fix. The
--                previous model stays in force; the message names it.
--
-- Argo CD runs custom health scripts without Lua's standard libraries (only the base
-- functions and `table`), so this script uses nothing else.

local hs = {}

-- Reasons botenv retries with backoff: the tag is still on its way, not broken.
local retried = {
  StorageUnavailable = true,
  SecretUnreadable = true,
}

local function find(conditions, wanted)
  if type(conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(conditions) do
    if type(c) == "table" and c.type == wanted then
      return c
    end
  end
  return nil
end

local function describe(c, fallback)
  local reason = c.reason
  local message = c.message
  if reason ~= nil and reason ~= "" and message ~= nil and message ~= "" then
    return tostring(reason) .. ": " .. tostring(message)
  end
  if message ~= nil and message ~= "" then
    return tostring(message)
  end
  if reason ~= nil and reason ~= "" then
    return tostring(reason)
  end
  return fallback
end

local generation = nil
if obj.metadata ~= nil then
  generation = tonumber(obj.metadata.generation)
end
local status = obj.status

if status == nil or type(status.conditions) ~= "table" then
  hs.status = "Progressing"
  hs.message = "Waiting for the botenv operator to resolve the tag"
  return hs
end

local observed = tonumber(status.observedGeneration)
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the botenv operator to observe generation " .. generation
  return hs
end

local ready = find(status.conditions, "Ready")
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the botenv operator to resolve the tag"
  return hs
end

local seen = tonumber(ready.observedGeneration)
if generation ~= nil and seen ~= nil and seen < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the botenv operator to resolve generation " .. generation
  return hs
end

if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready, "Resolved")
  return hs
end

if ready.status == "False" and not retried[ready.reason] then
  hs.status = "Degraded"
  hs.message = describe(ready, "The tag could not be resolved")
  return hs
end

hs.status = "Progressing"
hs.message = describe(ready, "Resolving the tag")
return hs
