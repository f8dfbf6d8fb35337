-- A session's network policy (`{"mode": "none"|"allowlist", "allow": [...]}`), and the audit of
-- its attempts to reach destinations through the egress proxy, newest kept (bounded per
-- session). Sessions made before had no egress.
ALTER TABLE sessions ADD COLUMN network TEXT NULL;
CREATE TABLE network_attempts (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    session_id VARCHAR(255) NOT NULL,
    execution_id VARCHAR(64) NULL,
    kind VARCHAR(16) NOT NULL,
    host VARCHAR(512) NOT NULL,
    port INT NULL,
    address VARCHAR(64) NULL,
    decision VARCHAR(32) NOT NULL,
    reason VARCHAR(64) NOT NULL,
    bytes_up BIGINT NOT NULL,
    bytes_down BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    KEY network_attempts_session (session_id, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
