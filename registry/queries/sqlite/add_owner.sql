-- ?1 name, ?2 owner, ?3 added by, ?4 now.
INSERT INTO owners (name, owner, added_by, added_at) VALUES (?1, ?2, ?3, ?4)
ON CONFLICT (name, owner) DO NOTHING
