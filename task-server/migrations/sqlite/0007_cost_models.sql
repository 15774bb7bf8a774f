-- A task's cost measures (cost.rs: {"by", "x": [...]}, JSON), computed at submit from its
-- arguments; and each function's fitted cost lines (fit.rs CostModel, JSON).
ALTER TABLE tasks ADD COLUMN cost TEXT;
ALTER TABLE function_stats ADD COLUMN model TEXT NOT NULL DEFAULT '{}';
-- A processor's runtimes against the predictions (HeartbeatRequest::speed): the ETA counts its
-- slots as 1/speed slots.
ALTER TABLE workers ADD COLUMN speed REAL;
