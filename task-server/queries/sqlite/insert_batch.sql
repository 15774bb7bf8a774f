INSERT INTO batches (id, owner, total, created_at) VALUES (?1, ?2, ?3, ?4)
