-- Concurrency caps and rate limits (issue 22). A task may count against a function's cap
-- (`cap_fn`, "fn:<package>/<function>": the manifest's max_concurrent / rate_per_s) and a
-- submit's concurrency key (`cap_key`, "key:<owner>/<key>"). A capped task is inserted `gated`:
-- queued but out of the ready index, so the claim never sees it. A gate pass (after a submit,
-- after a capped task finishes, and on every reaper pass; passes of all replicas take one
-- advisory lock) lets through, in claim order, the tasks whose every cap has room: fewer than
-- max_running of the key's tasks ungated and unfinished, and, for a rate, a start slot within
-- the next second (`next_at`, spaced 1/rate apart, becomes the task's available_at). So at
-- most max_running run at once and at most rate_per_s start per second, across processors and
-- replicas.
ALTER TABLE tasks ADD COLUMN cap_fn TEXT;
ALTER TABLE tasks ADD COLUMN cap_key TEXT;
ALTER TABLE tasks ADD COLUMN gated BOOLEAN NOT NULL DEFAULT FALSE;
DROP INDEX tasks_ready;
CREATE INDEX tasks_ready ON tasks(priority DESC, fair_tag, seq) WHERE state = 'queued' AND NOT gated;
CREATE INDEX tasks_gated_fn ON tasks(cap_fn, priority DESC, fair_tag, seq)
    WHERE state = 'queued' AND gated AND cap_fn IS NOT NULL;
CREATE INDEX tasks_gated_key ON tasks(cap_key, priority DESC, fair_tag, seq)
    WHERE state = 'queued' AND gated AND cap_key IS NOT NULL;
CREATE INDEX tasks_open_fn ON tasks(cap_fn)
    WHERE state IN ('queued', 'leased') AND NOT gated AND cap_fn IS NOT NULL;
CREATE INDEX tasks_open_key ON tasks(cap_key)
    WHERE state IN ('queued', 'leased') AND NOT gated AND cap_key IS NOT NULL;
CREATE TABLE caps (
    key         TEXT PRIMARY KEY,
    max_running BIGINT,
    rate_per_s  DOUBLE PRECISION,
    next_at     DOUBLE PRECISION NOT NULL DEFAULT 0,
    updated_at  BIGINT NOT NULL
);
