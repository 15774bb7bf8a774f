-- ?1 JSON array of ids: the owner of each that exists (a submit may only wait for its own tasks).
SELECT id, owner FROM tasks WHERE id IN (SELECT value FROM json_each(?1))
