-- A task's cost measures (cost.rs), computed at submit from its arguments: the declared cost
-- argument (NULL: none declared) and the measure in each of the 3 slots (plain numbers, so the
-- estimate's sums over a large queue read columns, not JSON); and each function's fitted cost
-- lines (fit.rs CostModel, JSON text).
ALTER TABLE tasks ADD COLUMN cost_by TEXT;
ALTER TABLE tasks ADD COLUMN cost0 DOUBLE PRECISION;
ALTER TABLE tasks ADD COLUMN cost1 DOUBLE PRECISION;
ALTER TABLE tasks ADD COLUMN cost2 DOUBLE PRECISION;
ALTER TABLE function_stats ADD COLUMN model TEXT NOT NULL DEFAULT '{}';
-- A processor's runtimes against the predictions (HeartbeatRequest::speed): the ETA counts its
-- slots as 1/speed slots.
ALTER TABLE workers ADD COLUMN speed DOUBLE PRECISION;
