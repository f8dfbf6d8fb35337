-- The initial schema (SQLite). Timestamps are epoch milliseconds, booleans 0/1, and JSON
-- values (maps, lists, events, return values, metrics) are stored as TEXT.

CREATE TABLE api_keys (
    id TEXT NOT NULL PRIMARY KEY,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    key_hash TEXT NOT NULL,
    is_admin INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE UNIQUE INDEX api_keys_key_hash ON api_keys (key_hash);

CREATE TABLE templates (
    id TEXT NOT NULL PRIMARY KEY,
    name TEXT NOT NULL,
    image_url TEXT NOT NULL,
    runtime_type TEXT NOT NULL,
    default_cpu_cores REAL NOT NULL,
    default_memory_mb INTEGER NOT NULL,
    default_disk_mb INTEGER NOT NULL,
    default_timeout_sec INTEGER NOT NULL,
    default_env_vars TEXT NOT NULL,
    pre_installed_packages TEXT NOT NULL,
    is_active INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE sessions (
    id TEXT NOT NULL PRIMARY KEY,
    owner_key_id TEXT NOT NULL,
    template_id TEXT NOT NULL,
    status TEXT NOT NULL,
    cpu TEXT NOT NULL,
    memory TEXT NOT NULL,
    disk TEXT NOT NULL,
    timeout_sec INTEGER NOT NULL,
    env_vars TEXT NOT NULL,
    runtime_type TEXT NOT NULL,
    sandbox_name TEXT,
    container_id TEXT,
    runtime_node TEXT,
    workspace_path TEXT,
    error_message TEXT,
    python_package_index_url TEXT NOT NULL,
    requested_dependencies TEXT NOT NULL,
    installed_dependencies TEXT NOT NULL,
    dependency_install_status TEXT NOT NULL,
    dependency_install_error TEXT,
    dependency_install_started_at INTEGER,
    dependency_install_completed_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    completed_at INTEGER,
    last_activity_at INTEGER
);
CREATE INDEX sessions_owner_created ON sessions (owner_key_id, created_at);
CREATE INDEX sessions_status ON sessions (status);
CREATE INDEX sessions_template ON sessions (template_id);

-- What is left of a deleted session: its id stays taken and its owner known.
CREATE TABLE deleted_sessions (
    id TEXT NOT NULL PRIMARY KEY,
    owner_key_id TEXT NOT NULL,
    deleted_at INTEGER NOT NULL
);

CREATE TABLE executions (
    id TEXT NOT NULL PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions (id),
    status TEXT NOT NULL,
    language TEXT NOT NULL,
    code TEXT NOT NULL,
    event TEXT,
    timeout_sec INTEGER NOT NULL,
    exit_code INTEGER,
    error_message TEXT,
    stdout TEXT,
    stderr TEXT,
    return_value TEXT,
    artifacts TEXT NOT NULL,
    metrics TEXT,
    retry_count INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    completed_at INTEGER,
    execution_time REAL
);
CREATE INDEX executions_session_created ON executions (session_id, created_at);
CREATE INDEX executions_status ON executions (status);

CREATE TABLE leases (
    name TEXT NOT NULL PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
