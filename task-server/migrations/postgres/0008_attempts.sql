-- Earlier attempts of a task that went back to the queue (a retryable error, an expired lease, a
-- restarted processor): JSON [{attempt, worker_id, started_at, ended_at, error}], appended by the
-- statements that requeue. The current or last attempt stays in the lease columns, so a task that
-- succeeds at its first attempt never writes here.
ALTER TABLE tasks ADD COLUMN attempts JSONB;
