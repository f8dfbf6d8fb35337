-- The initial schema (MySQL/MariaDB). Timestamps are epoch milliseconds, booleans 0/1, and JSON
-- values (maps, lists, events, return values, metrics) are stored as text. Columns use the
-- types sqlx's Any driver reads (no TINYINT: booleans are SMALLINT), ids compare as bytes
-- (utf8mb4_bin, like SQLite), and unbounded text is MEDIUMTEXT (outputs reach 1 MiB each).

CREATE TABLE api_keys (
    id VARCHAR(255) NOT NULL PRIMARY KEY,
    name MEDIUMTEXT NOT NULL,
    prefix VARCHAR(255) NOT NULL,
    key_hash VARCHAR(255) NOT NULL,
    is_admin SMALLINT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT,
    UNIQUE KEY api_keys_key_hash (key_hash)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE templates (
    id VARCHAR(255) NOT NULL PRIMARY KEY,
    name MEDIUMTEXT NOT NULL,
    image_url MEDIUMTEXT NOT NULL,
    runtime_type VARCHAR(255) NOT NULL,
    default_cpu_cores DOUBLE NOT NULL,
    default_memory_mb BIGINT NOT NULL,
    default_disk_mb BIGINT NOT NULL,
    default_timeout_sec BIGINT NOT NULL,
    default_env_vars MEDIUMTEXT NOT NULL,
    pre_installed_packages MEDIUMTEXT NOT NULL,
    is_active SMALLINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE sessions (
    id VARCHAR(255) NOT NULL PRIMARY KEY,
    owner_key_id VARCHAR(255) NOT NULL,
    template_id VARCHAR(255) NOT NULL,
    status VARCHAR(32) NOT NULL,
    cpu VARCHAR(255) NOT NULL,
    memory VARCHAR(255) NOT NULL,
    disk VARCHAR(255) NOT NULL,
    timeout_sec BIGINT NOT NULL,
    env_vars MEDIUMTEXT NOT NULL,
    runtime_type VARCHAR(255) NOT NULL,
    sandbox_name VARCHAR(255),
    container_id VARCHAR(255),
    runtime_node VARCHAR(255),
    workspace_path MEDIUMTEXT,
    error_message MEDIUMTEXT,
    python_package_index_url MEDIUMTEXT NOT NULL,
    requested_dependencies MEDIUMTEXT NOT NULL,
    installed_dependencies MEDIUMTEXT NOT NULL,
    dependency_install_status VARCHAR(32) NOT NULL,
    dependency_install_error MEDIUMTEXT,
    dependency_install_started_at BIGINT,
    dependency_install_completed_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    completed_at BIGINT,
    last_activity_at BIGINT,
    KEY sessions_owner_created (owner_key_id, created_at),
    KEY sessions_status (status),
    KEY sessions_template (template_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- What is left of a deleted session: its id stays taken and its owner known.
CREATE TABLE deleted_sessions (
    id VARCHAR(255) NOT NULL PRIMARY KEY,
    owner_key_id VARCHAR(255) NOT NULL,
    deleted_at BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE executions (
    id VARCHAR(255) NOT NULL PRIMARY KEY,
    session_id VARCHAR(255) NOT NULL,
    status VARCHAR(32) NOT NULL,
    language VARCHAR(32) NOT NULL,
    code MEDIUMTEXT NOT NULL,
    event MEDIUMTEXT,
    timeout_sec BIGINT NOT NULL,
    exit_code INT,
    error_message MEDIUMTEXT,
    stdout MEDIUMTEXT,
    stderr MEDIUMTEXT,
    return_value MEDIUMTEXT,
    artifacts MEDIUMTEXT NOT NULL,
    metrics MEDIUMTEXT,
    retry_count BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    completed_at BIGINT,
    execution_time DOUBLE,
    KEY executions_session_created (session_id, created_at),
    KEY executions_status (status),
    CONSTRAINT executions_session FOREIGN KEY (session_id) REFERENCES sessions (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE leases (
    name VARCHAR(255) NOT NULL PRIMARY KEY,
    holder VARCHAR(255) NOT NULL,
    expires_at BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
