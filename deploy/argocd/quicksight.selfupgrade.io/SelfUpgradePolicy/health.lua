-- Argo CD health of a SelfUpgradePolicy, from its kstatus conditions:
--   Healthy     Ready=True for the current generation (evaluated; in Enforce, every match decided)
--   Degraded    Stalled=True (InvalidSpec naming the rule, NotAuthorized)
--   Progressing anything else: not yet evaluated, the brake holding (BrakeHolding), a creation or
--               a listing being retried
local hs = {}
if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to evaluate the policy"
  return hs
end
local generation = obj.metadata.generation
if generation ~= nil and (obj.status.observedGeneration == nil or obj.status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to evaluate generation " .. generation
  return hs
end
local conditions = {}
for _, condition in ipairs(obj.status.conditions) do
  conditions[condition.type] = condition
end
local function said(condition)
  return condition.reason .. ": " .. (condition.message or "")
end
if conditions.Stalled ~= nil and conditions.Stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = said(conditions.Stalled)
elseif conditions.Ready ~= nil and conditions.Ready.status == "True" then
  hs.status = "Healthy"
  hs.message = said(conditions.Ready)
else
  hs.status = "Progressing"
  hs.message = said(conditions.Reconciling or conditions.Ready)
end
return hs
