-- Warm pools: sandboxes started ahead of demand, one row each, claimed atomically.
CREATE TABLE pool_sandboxes (
    id VARCHAR(255) NOT NULL PRIMARY KEY,
    template_id VARCHAR(255) NOT NULL,
    state VARCHAR(32) NOT NULL,
    container_id VARCHAR(255),
    sandbox_name VARCHAR(255),
    created_at BIGINT NOT NULL,
    ready_at BIGINT,
    claimed_at BIGINT,
    KEY pool_sandboxes_template_state (template_id, state)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
