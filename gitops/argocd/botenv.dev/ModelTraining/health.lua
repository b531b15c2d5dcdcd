-- Argo CD health check for botenv.dev/ModelTraining.
--
-- A training has status.phase (Pending, Validating, Training, Testing, Uploading, Succeeded,
-- Failed), status.observedGeneration and a Ready condition (True once the model is stored).
--
--   Healthy      phase Succeeded for the current generation: the model is stored (and the
--                tag moved, when the training names one)
--   Degraded     phase Failed for the current generation: status.reason and message say why
--   Progressing  anything else: no status yet, an older generation, or still running
--
-- Like the other scripts, it uses only Lua's base functions (Argo CD's sandbox).

local hs = {}

local generation = nil
if obj.metadata ~= nil then
  generation = tonumber(obj.metadata.generation)
end
local status = obj.status

if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the botenv operator to start the training"
  return hs
end

local observed = tonumber(status.observedGeneration)
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the botenv operator to observe generation " .. generation
  return hs
end

local function text(fallback)
  local reason, message = status.reason, status.message
  if type(status.conditions) == "table" then
    for _, c in ipairs(status.conditions) do
      if type(c) == "table" and c.type == "Ready" then
        reason = reason or c.reason
        message = message or c.message
      end
    end
  end
  if reason ~= nil and message ~= nil and message ~= "" then
    return tostring(reason) .. ": " .. tostring(message)
  end
  return message or fallback
end

if status.phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = text("The model is stored")
elseif status.phase == "Failed" then
  hs.status = "Degraded"
  hs.message = text("The training failed")
else
  hs.status = "Progressing"
  hs.message = tostring(status.phase) .. ": " .. text("training")
end
return hs
