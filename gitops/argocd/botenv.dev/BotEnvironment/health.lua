-- Argo CD health check for botenv.dev/BotEnvironment.
--
-- Reads what the botenv operator reports: status.observedGeneration and the conditions
-- Ready, Progressing and Degraded, each of which carries the observedGeneration it was
-- computed from.
--
--   Progressing  no status yet, or the status describes an older generation of the spec,
--                or Progressing=True (a rollout is under way, or the tag has no model yet)
--   Degraded     Degraded=True: the spec could not be applied (reason and message say why)
--   Healthy      Ready=True for the current generation
--
-- Argo CD runs custom health scripts without Lua's standard libraries (only the base
-- functions and `table`), so this script uses nothing else.

local hs = {}

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

-- A condition counts only when it was computed from the current generation (a condition
-- without observedGeneration is taken as current).
local function holds(c, generation)
  if c == nil or c.status ~= "True" then
    return false
  end
  local seen = tonumber(c.observedGeneration)
  return generation == nil or seen == nil or seen >= generation
end

local function describe(c, fallback)
  if c == nil then
    return fallback
  end
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
  hs.message = "Waiting for the botenv operator to report the environment's status"
  return hs
end

local observed = tonumber(status.observedGeneration)
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the botenv operator to observe generation " .. generation
  return hs
end

local degraded = find(status.conditions, "Degraded")
local progressing = find(status.conditions, "Progressing")
local ready = find(status.conditions, "Ready")

if holds(degraded, generation) then
  hs.status = "Degraded"
  hs.message = describe(degraded, "The environment is degraded")
  return hs
end

if holds(progressing, generation) then
  hs.status = "Progressing"
  hs.message = describe(progressing, "Rolling out")
  return hs
end

if holds(ready, generation) then
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
  return hs
end

hs.status = "Progressing"
hs.message = describe(ready, "Waiting for the environment to become Ready")
return hs
