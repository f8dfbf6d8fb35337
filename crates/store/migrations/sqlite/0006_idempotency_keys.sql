-- Requests made with an Idempotency-Key: which operation and request each key was first used
-- for, and what it made, so a retry answers with that instead of doing it again.
CREATE TABLE idempotency_keys (
    owner_key_id TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    operation TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    resource_id TEXT,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (owner_key_id, idem_key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
