-- A session's network policy (`{"mode": "none"|"allowlist", "allow": [...]}`), and the audit of
-- its attempts to reach destinations through the egress proxy, newest kept (bounded per
-- session). Sessions made before had no egress.
ALTER TABLE sessions ADD COLUMN network TEXT NOT NULL DEFAULT '{"mode":"none","allow":[]}';
CREATE TABLE network_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL,
    execution_id TEXT,
    kind TEXT NOT NULL,
    host TEXT NOT NULL,
    port INTEGER,
    address TEXT,
    decision TEXT NOT NULL,
    reason TEXT NOT NULL,
    bytes_up INTEGER NOT NULL,
    bytes_down INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL
);
CREATE INDEX network_attempts_session ON network_attempts (session_id, id);
