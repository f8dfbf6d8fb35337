-- Code contexts: long-lived interpreters of a session, and what each was created with (their
-- interpreters' state is the executor's). Executions name the context they ran in and keep
-- their rich display outputs and structured error.
CREATE TABLE contexts (
    id TEXT NOT NULL PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions (id),
    language TEXT NOT NULL,
    cwd TEXT,
    env_vars TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX contexts_session_created ON contexts (session_id, created_at);
ALTER TABLE executions ADD COLUMN context_id TEXT;
ALTER TABLE executions ADD COLUMN results TEXT NOT NULL DEFAULT '[]';
ALTER TABLE executions ADD COLUMN results_truncated INTEGER NOT NULL DEFAULT 0;
ALTER TABLE executions ADD COLUMN error TEXT;
