SELECT count(*) FROM owners WHERE name = ?1
