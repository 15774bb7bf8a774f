-- ?1 id, ?2 package, ?3 version spec (NULL: all), ?4 payload (JSON text), ?5 by, ?6 now. Its seq.
INSERT INTO broadcasts (id, package, version, payload, created_by, created_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING seq
