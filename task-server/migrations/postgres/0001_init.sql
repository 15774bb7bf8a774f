-- crpc task server schema (PostgreSQL). Times are Unix milliseconds.
CREATE TABLE tasks (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              UUID    NOT NULL UNIQUE,
    owner           TEXT    NOT NULL,
    package         TEXT    NOT NULL DEFAULT '',
    version         TEXT    NOT NULL DEFAULT '',
    function        TEXT    NOT NULL,
    args            JSONB   NOT NULL DEFAULT '[]',
    kwargs          JSONB   NOT NULL DEFAULT '{}',
    state           TEXT    NOT NULL CHECK (state IN ('waiting','queued','leased','succeeded','failed','cancelled')),
    priority        BIGINT  NOT NULL DEFAULT 0,
    attempt         BIGINT  NOT NULL DEFAULT 0,
    max_attempts    BIGINT  NOT NULL CHECK (max_attempts >= 1),
    timeout_s       BIGINT,
    available_at    BIGINT  NOT NULL,
    lease_epoch     BIGINT  NOT NULL DEFAULT 0,
    lease_worker    TEXT,
    leased_at       BIGINT,
    lease_deadline  BIGINT,
    timeout_at      BIGINT,
    answered_epoch  BIGINT,
    progress        DOUBLE PRECISION,
    answer          JSONB,
    error           JSONB,
    runtime_ms      DOUBLE PRECISION,
    created_at      BIGINT  NOT NULL,
    finished_at     BIGINT,
    finish_order    BIGINT,              -- completion order (a sequence value taken at finish)
    finish_seq      BIGINT,              -- results cursor: assigned when results are read, in visibility order
    ttl_s           BIGINT,
    expires_at      BIGINT,
    idempotency_key TEXT,
    request_hash    TEXT,
    batch_id        UUID,
    batch_index     BIGINT,
    args_hash       TEXT    NOT NULL,
    memoize         BOOLEAN NOT NULL DEFAULT FALSE,
    req_gpus        BIGINT  NOT NULL DEFAULT 0,
    req_memory_mb   BIGINT  NOT NULL DEFAULT 0,
    req_datasets    JSONB,
    depends_on      JSONB,
    files           JSONB
);
CREATE UNIQUE INDEX tasks_idempotency ON tasks(owner, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX tasks_ready   ON tasks(priority DESC, seq) WHERE state = 'queued';
CREATE INDEX tasks_delayed ON tasks(available_at) WHERE state = 'queued';
CREATE INDEX tasks_leased  ON tasks(lease_deadline) WHERE state = 'leased';
CREATE INDEX tasks_owner   ON tasks(owner, seq);
CREATE INDEX tasks_batch   ON tasks(batch_id, finish_seq) WHERE batch_id IS NOT NULL;
CREATE INDEX tasks_unsequenced ON tasks(batch_id) WHERE batch_id IS NOT NULL AND finished_at IS NOT NULL AND finish_seq IS NULL;
CREATE INDEX tasks_expiry  ON tasks(expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX tasks_memo    ON tasks(args_hash) WHERE memoize;
CREATE SEQUENCE finish_seq_counter;
CREATE SEQUENCE finish_order_counter;

CREATE TABLE batches (
    id         UUID   PRIMARY KEY,
    owner      TEXT   NOT NULL,
    total      BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE function_stats (
    package   TEXT   NOT NULL,
    version   TEXT   NOT NULL,
    function  TEXT   NOT NULL,
    count     BIGINT NOT NULL,
    failures  BIGINT NOT NULL,
    mean_ms   DOUBLE PRECISION NOT NULL,
    var_ms    DOUBLE PRECISION NOT NULL,
    sketch    TEXT   NOT NULL,
    last_seen BIGINT NOT NULL,
    PRIMARY KEY (package, version, function)
);

CREATE TABLE workers (
    worker_id    TEXT   PRIMARY KEY,
    owner        TEXT   NOT NULL,
    slots        BIGINT NOT NULL,
    capabilities JSONB  NOT NULL,
    first_seen   BIGINT NOT NULL,
    last_seen    BIGINT NOT NULL
);

-- A queue table turns rows over fast: every claim leaves a dead entry at the front of tasks_ready
-- that later claims must step over until vacuum removes it. Vacuum it early and without throttling.
ALTER TABLE tasks SET (autovacuum_vacuum_scale_factor = 0.0, autovacuum_vacuum_threshold = 5000,
                       autovacuum_vacuum_cost_delay = 0, autovacuum_analyze_scale_factor = 0.05);
