-- Broadcasts (issue 22): an operator's payload for every loaded instance of a package (and
-- version spec), in `seq` order; each processor reports once it applied one.
CREATE TABLE broadcasts (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id         UUID NOT NULL UNIQUE,
    package    TEXT NOT NULL,
    version    TEXT,
    payload    TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX broadcasts_created ON broadcasts(created_at);
CREATE TABLE broadcast_acks (
    broadcast  UUID NOT NULL REFERENCES broadcasts(id) ON DELETE CASCADE,
    worker_id  TEXT NOT NULL,
    applied_at BIGINT NOT NULL,
    instances  BIGINT NOT NULL,
    error      TEXT,
    PRIMARY KEY (broadcast, worker_id)
);
