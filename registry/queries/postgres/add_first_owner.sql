-- $1 name, $2 publisher (who adds themselves), $3 now.
INSERT INTO owners (name, owner, added_by, added_at) VALUES ($1, $2, $2, $3)
