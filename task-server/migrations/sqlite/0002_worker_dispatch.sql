-- A processor's measured dispatch overhead per task (ms), added to the ETA per queued task.
ALTER TABLE workers ADD COLUMN dispatch_ms REAL;
