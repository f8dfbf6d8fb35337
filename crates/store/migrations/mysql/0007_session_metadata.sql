-- Labels a client attaches to a session (string keys and values, a JSON object), which lists
-- can filter on.
ALTER TABLE sessions ADD COLUMN metadata TEXT NULL;
