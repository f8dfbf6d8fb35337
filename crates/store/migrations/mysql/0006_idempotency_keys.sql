-- Requests made with an Idempotency-Key: which operation and request each key was first used
-- for, and what it made, so a retry answers with that instead of doing it again.
CREATE TABLE idempotency_keys (
    owner_key_id VARCHAR(255) NOT NULL,
    idem_key VARCHAR(255) NOT NULL,
    operation VARCHAR(512) NOT NULL,
    fingerprint VARCHAR(128) NOT NULL,
    resource_id VARCHAR(255) NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (owner_key_id, idem_key),
    KEY idempotency_keys_created (created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
