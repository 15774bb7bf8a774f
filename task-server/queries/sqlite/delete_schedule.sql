-- ?1 id, ?2 owner (NULL: any, for an admin).
DELETE FROM schedules WHERE id = ?1 AND (?2 IS NULL OR owner = ?2)
