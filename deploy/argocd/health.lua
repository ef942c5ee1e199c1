-- Argo CD health check for compute.together.ai/GPUCluster (install: deploy/README.md).
-- It reads what the operator writes: status.observedGeneration, status.state (Together's
-- cluster status) and the Ready / Reconciling / Stalled conditions.
local hs = {}

local function condition(kind)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function is_true(c)
  return c ~= nil and c.status == "True"
end

local function describe(c)
  return (c.reason or "") .. ": " .. (c.message or "")
end

local stalled = condition("Stalled")

-- A GPUCluster being deleted holds its finalizer until Together confirms the cluster is gone.
if obj.metadata.deletionTimestamp ~= nil then
  if is_true(stalled) then
    hs.status = "Degraded"
    hs.message = "Deleting, blocked by " .. describe(stalled)
  else
    hs.status = "Progressing"
    hs.message = "Deleting"
    local reconciling = condition("Reconciling")
    if is_true(reconciling) then
      hs.message = "Deleting: " .. reconciling.message
    end
  end
  return hs
end

-- Conditions describe an older spec until the operator has seen the current generation.
local generation = obj.metadata.generation or 0
local observed = nil
if obj.status ~= nil then
  observed = obj.status.observedGeneration
end
if observed == nil or observed < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

if is_true(stalled) then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end

-- Still applying the spec (a scale-up waiting out a rate limit, say) is Progressing even
-- while Together reports the cluster Ready, as kstatus reads Reconciling=True.
local reconciling = condition("Reconciling")
local ready = condition("Ready")
if is_true(ready) and not is_true(reconciling) then
  hs.status = "Healthy"
  hs.message = ready.message
  return hs
end

local state = obj.status.state
if state == "Paused" or state == "OnDemandComputePaused" then
  hs.status = "Suspended"
  hs.message = "Together reports the cluster " .. state
  return hs
end

hs.status = "Progressing"
if is_true(reconciling) then
  hs.message = describe(reconciling)
elseif ready ~= nil then
  hs.message = describe(ready)
else
  hs.message = "Waiting for the operator to report conditions"
end
return hs
