-- Argo CD health of a SelfUpgradeDecision, from its kstatus conditions:
--   Healthy     Ready=True for the current generation (the request shows the decided state)
--   Degraded    Stalled=True (NotAuthorized, AlreadyDecided, RetriesExhausted, Conflict, ...)
--   Suspended   Ready=False with reason Paused (the quicksight.selfupgrade.io/paused annotation)
--               or DryRun (run --dry-run: the due call was not sent)
--   Progressing anything else: not yet observed, action sent, failed action awaiting a retry
local hs = {}
if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe the decision"
  return hs
end
local generation = obj.metadata.generation
if generation ~= nil and (obj.status.observedGeneration == nil or obj.status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end
local ready, stalled, reconciling
for _, condition in ipairs(obj.status.conditions) do
  if condition.type == "Ready" then
    ready = condition
  elseif condition.type == "Stalled" then
    stalled = condition
  elseif condition.type == "Reconciling" then
    reconciling = condition
  end
end
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.reason .. ": " .. (stalled.message or "")
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or ready.reason
  return hs
end
if ready ~= nil and (ready.reason == "Paused" or ready.reason == "DryRun") then
  hs.status = "Suspended"
  hs.message = ready.message or ready.reason
  return hs
end
hs.status = "Progressing"
local current = reconciling or ready
if current ~= nil then
  hs.message = current.reason .. ": " .. (current.message or "")
else
  hs.message = "Waiting for the operator"
end
return hs
