-- Package ownership: the first publisher of a name owns it; owners (or an admin) add owners.
CREATE TABLE packages (
    name       TEXT   PRIMARY KEY,
    created_by TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE owners (
    name     TEXT   NOT NULL REFERENCES packages (name),
    owner    TEXT   NOT NULL,
    added_by TEXT   NOT NULL,
    added_at BIGINT NOT NULL,
    PRIMARY KEY (name, owner)
);
-- Packages published before owners existed belong to the publisher of their first version.
INSERT INTO packages (name, created_by, created_at)
SELECT v.name, v.publisher, v.published_at FROM versions v
WHERE v.published_at = (SELECT min(w.published_at) FROM versions w WHERE w.name = v.name)
ON CONFLICT (name) DO NOTHING;
INSERT INTO owners (name, owner, added_by, added_at)
SELECT name, created_by, created_by, created_at FROM packages;
