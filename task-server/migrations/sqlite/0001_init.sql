-- crpc task server schema (SQLite). Times are Unix milliseconds.
CREATE TABLE tasks (
    seq             INTEGER PRIMARY KEY,            -- queue order (FIFO within a priority)
    id              TEXT    NOT NULL UNIQUE,        -- UUID v7
    owner           TEXT    NOT NULL,
    package         TEXT    NOT NULL DEFAULT '',
    version         TEXT    NOT NULL DEFAULT '',
    function        TEXT    NOT NULL,
    args            TEXT    NOT NULL DEFAULT '[]',  -- JSON
    kwargs          TEXT    NOT NULL DEFAULT '{}',  -- JSON
    state           TEXT    NOT NULL CHECK (state IN ('waiting','queued','leased','succeeded','failed','cancelled')),
    priority        INTEGER NOT NULL DEFAULT 0,
    attempt         INTEGER NOT NULL DEFAULT 0,     -- leases handed out so far
    max_attempts    INTEGER NOT NULL CHECK (max_attempts >= 1),
    timeout_s       INTEGER,
    available_at    INTEGER NOT NULL,               -- retry backoff: not leased before this
    lease_epoch     INTEGER NOT NULL DEFAULT 0,     -- fencing token, +1 per lease
    lease_worker    TEXT,
    leased_at       INTEGER,
    lease_deadline  INTEGER,
    timeout_at      INTEGER,
    answered_epoch  INTEGER,                        -- epoch whose answer was accepted (idempotent replays)
    progress        REAL,
    answer          TEXT,                           -- JSON
    error           TEXT,                           -- JSON {kind, message}
    runtime_ms      REAL,
    created_at      INTEGER NOT NULL,
    finished_at     INTEGER,
    finish_seq      INTEGER,                        -- completion order (batch results cursor)
    ttl_s           INTEGER,                        -- result retention after finishing
    expires_at      INTEGER,
    idempotency_key TEXT,
    request_hash    TEXT,
    batch_id        TEXT,
    batch_index     INTEGER,
    args_hash       TEXT    NOT NULL,               -- memoization key
    memoize         INTEGER NOT NULL DEFAULT 0,
    req_gpus        INTEGER NOT NULL DEFAULT 0,
    req_memory_mb   INTEGER NOT NULL DEFAULT 0,
    req_datasets    TEXT,                           -- JSON array
    depends_on      TEXT,                           -- JSON array of task ids (DAG, `waiting`)
    files           TEXT                            -- JSON file references
);
CREATE UNIQUE INDEX tasks_idempotency ON tasks(owner, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX tasks_ready   ON tasks(priority DESC, seq) WHERE state = 'queued';
CREATE INDEX tasks_delayed ON tasks(available_at) WHERE state = 'queued';
CREATE INDEX tasks_leased  ON tasks(lease_deadline) WHERE state = 'leased';
CREATE INDEX tasks_owner   ON tasks(owner, seq);
CREATE INDEX tasks_batch   ON tasks(batch_id, finish_seq) WHERE batch_id IS NOT NULL;
CREATE INDEX tasks_expiry  ON tasks(expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX tasks_memo    ON tasks(args_hash) WHERE memoize = 1;

CREATE TABLE batches (
    id         TEXT    PRIMARY KEY,
    owner      TEXT    NOT NULL,
    total      INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE function_stats (
    package   TEXT    NOT NULL,
    version   TEXT    NOT NULL,
    function  TEXT    NOT NULL,
    count     INTEGER NOT NULL,
    failures  INTEGER NOT NULL,
    mean_ms   REAL    NOT NULL,
    var_ms    REAL    NOT NULL,
    sketch    TEXT    NOT NULL,                     -- JSON log-histogram
    last_seen INTEGER NOT NULL,
    PRIMARY KEY (package, version, function)
);

CREATE TABLE workers (
    worker_id    TEXT    PRIMARY KEY,
    owner        TEXT    NOT NULL,
    slots        INTEGER NOT NULL,
    capabilities TEXT    NOT NULL,                  -- JSON
    first_seen   INTEGER NOT NULL,
    last_seen    INTEGER NOT NULL
);
