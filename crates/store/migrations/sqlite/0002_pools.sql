-- Warm pools: sandboxes started ahead of demand, one row each, claimed atomically.
CREATE TABLE pool_sandboxes (
    id TEXT NOT NULL PRIMARY KEY,
    template_id TEXT NOT NULL,
    state TEXT NOT NULL,
    container_id TEXT,
    sandbox_name TEXT,
    created_at INTEGER NOT NULL,
    ready_at INTEGER,
    claimed_at INTEGER
);
CREATE INDEX pool_sandboxes_template_state ON pool_sandboxes (template_id, state);
