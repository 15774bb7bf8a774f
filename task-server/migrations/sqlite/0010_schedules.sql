-- Recurring schedules (issue 17): a cron expression in a time zone, and the task each tick
-- submits. `next_at` is the next tick (ms); a replica that finds it due submits the tick's task
-- under the idempotency key `schedule:<id>:<tick>` (one task per tick, whichever replica wins)
-- and moves `next_at` on only if nobody else did (compare and set).
CREATE TABLE schedules (
    id         TEXT    PRIMARY KEY,
    owner      TEXT    NOT NULL,
    cron       TEXT    NOT NULL,
    timezone   TEXT    NOT NULL,
    task       TEXT    NOT NULL,                    -- JSON TaskSpec
    next_at    INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    fired      INTEGER NOT NULL DEFAULT 0,
    last_task  TEXT
);
CREATE INDEX schedules_due ON schedules(next_at);
CREATE INDEX schedules_owner ON schedules(owner, created_at);
