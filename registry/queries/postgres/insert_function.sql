INSERT INTO functions (function, name, version) VALUES ($1, $2, $3)
