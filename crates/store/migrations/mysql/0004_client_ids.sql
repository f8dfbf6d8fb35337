-- Client-chosen session ids are scoped per API key: the session's id is derived from the key and
-- the chosen id, which is kept here to show to its owner.
ALTER TABLE sessions ADD COLUMN client_id VARCHAR(255) NULL;
