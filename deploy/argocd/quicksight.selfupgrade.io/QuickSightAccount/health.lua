-- Argo CD health of a QuickSightAccount, from its Ready condition:
--   Healthy     Ready=True for the current generation (credentials resolve; with
--               spec.selfUpgrade, every QuickSight namespace has the declared approval mode)
--   Degraded    Ready=False (ApprovalModeDrift, CredentialsUnresolvable, ApprovalModeUnknown, ...)
--   Progressing not yet observed, or Ready=Unknown (nothing to check yet)
local hs = {}
local generation = obj.metadata.generation
if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe the binding"
  return hs
end
if generation ~= nil and (obj.status.observedGeneration == nil or obj.status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end
for _, condition in ipairs(obj.status.conditions) do
  if condition.type == "Ready" then
    local message = condition.reason .. ": " .. (condition.message or "")
    if condition.status == "True" then
      hs.status = "Healthy"
    elseif condition.status == "False" then
      hs.status = "Degraded"
    else
      hs.status = "Progressing"
    end
    hs.message = message
    return hs
  end
end
hs.status = "Progressing"
hs.message = "Waiting for the operator"
return hs
