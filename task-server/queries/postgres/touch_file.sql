-- $1 sha256, $2 owner, $3 now. The owner's copy, kept from now on as if uploaded now; its key.
UPDATE files SET created_at = GREATEST(created_at, $3) WHERE sha256 = $1 AND owner = $2 RETURNING key
