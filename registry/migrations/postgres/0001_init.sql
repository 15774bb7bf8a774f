-- crpc registry metadata (PostgreSQL). Archives live in the blob directory, addressed by sha256.
CREATE TABLE versions (
    name         TEXT    NOT NULL,
    version      TEXT    NOT NULL,
    major        BIGINT  NOT NULL,
    minor        BIGINT  NOT NULL,
    patch        BIGINT  NOT NULL,
    sha256       TEXT    NOT NULL,
    size         BIGINT  NOT NULL,
    signature    TEXT,
    yanked       BOOLEAN NOT NULL DEFAULT FALSE,
    manifest     TEXT    NOT NULL,       -- JSON of the validated crpc.toml
    publisher    TEXT    NOT NULL,
    published_at BIGINT  NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE functions (
    function TEXT NOT NULL,
    name     TEXT NOT NULL,
    version  TEXT NOT NULL,
    PRIMARY KEY (function, name, version)
);
