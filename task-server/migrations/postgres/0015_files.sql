-- Files (issue 19): content-addressed blobs in the blob store, one row per (sha256, owner).
-- Each owner's upload is its own object (`key`), so removing one owner's copy never races
-- another's upload of the same bytes; `size` counts against the owner's quota. A task's
-- `{"$file": "sha256:…"}` arguments are its `task_files` rows: they make the blob readable by
-- the task's owner and by the worker holding its lease, and keep every copy of it alive.
CREATE TABLE files (
    sha256     TEXT   NOT NULL,
    owner      TEXT   NOT NULL,
    key        TEXT   NOT NULL,
    size       BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (sha256, owner)
);
CREATE INDEX files_owner ON files(owner);
CREATE INDEX files_created ON files(created_at);
CREATE TABLE task_files (
    task   UUID NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (task, sha256)
);
CREATE INDEX task_files_sha ON task_files(sha256);
