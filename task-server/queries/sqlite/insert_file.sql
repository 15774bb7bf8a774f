-- ?1 sha256, ?2 owner, ?3 key, ?4 size, ?5 now. A new copy (none when the owner has one).
INSERT INTO files (sha256, owner, key, size, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
ON CONFLICT DO NOTHING
