-- Files (issue 19): content-addressed blobs in the blob store, one row per (sha256, owner).
-- Each owner's upload is its own object (`key`), so removing one owner's copy never races
-- another's upload of the same bytes; `size` counts against the owner's quota. A task's
-- `{"$file": "sha256:…"}` arguments are its `task_files` rows: they make the blob readable by
-- the task's owner and by the worker holding its lease, and keep every copy of it alive.
CREATE TABLE files (
    sha256     TEXT    NOT NULL,
    owner      TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    size       INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (sha256, owner)
) WITHOUT ROWID;
CREATE INDEX files_owner ON files(owner);
CREATE INDEX files_created ON files(created_at);
CREATE TABLE task_files (
    task   TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (task, sha256)
) WITHOUT ROWID;
CREATE INDEX task_files_sha ON task_files(sha256);
CREATE TRIGGER task_files_gone AFTER DELETE ON tasks BEGIN
  DELETE FROM task_files WHERE task = old.id;
END;
