-- A task's cost measures (cost.rs: {"by", "x": [...]}), computed at submit from its arguments;
-- and each function's fitted cost lines (fit.rs CostModel, JSON text).
ALTER TABLE tasks ADD COLUMN cost jsonb;
ALTER TABLE function_stats ADD COLUMN model TEXT NOT NULL DEFAULT '{}';
-- A processor's runtimes against the predictions (HeartbeatRequest::speed): the ETA counts its
-- slots as 1/speed slots.
ALTER TABLE workers ADD COLUMN speed DOUBLE PRECISION;
