-- Code contexts: long-lived interpreters of a session, and what each was created with (their
-- interpreters' state is the executor's). Executions name the context they ran in and keep
-- their rich display outputs and structured error.
CREATE TABLE contexts (
    id VARCHAR(255) NOT NULL PRIMARY KEY,
    session_id VARCHAR(255) NOT NULL,
    language VARCHAR(32) NOT NULL,
    cwd TEXT,
    env_vars MEDIUMTEXT NOT NULL,
    created_at BIGINT NOT NULL,
    KEY contexts_session_created (session_id, created_at),
    CONSTRAINT contexts_session FOREIGN KEY (session_id) REFERENCES sessions (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
ALTER TABLE executions ADD COLUMN context_id VARCHAR(255) NULL;
ALTER TABLE executions ADD COLUMN results LONGTEXT NULL;
ALTER TABLE executions ADD COLUMN results_truncated BIGINT NOT NULL DEFAULT 0;
ALTER TABLE executions ADD COLUMN error MEDIUMTEXT NULL;
