-- crpc registry metadata (SQLite). Archives live in the blob directory, addressed by sha256.
CREATE TABLE versions (
    name         TEXT    NOT NULL,
    version      TEXT    NOT NULL,
    major        INTEGER NOT NULL,
    minor        INTEGER NOT NULL,
    patch        INTEGER NOT NULL,
    sha256       TEXT    NOT NULL,
    size         INTEGER NOT NULL,
    signature    TEXT,
    yanked       INTEGER NOT NULL DEFAULT 0 CHECK (yanked IN (0, 1)),
    manifest     TEXT    NOT NULL,       -- JSON of the validated crpc.toml
    publisher    TEXT    NOT NULL,
    published_at INTEGER NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE functions (
    function TEXT NOT NULL,
    name     TEXT NOT NULL,
    version  TEXT NOT NULL,
    PRIMARY KEY (function, name, version)
);
