-- Places in a pool: each starting or ready pool sandbox holds one of its template's places (0 to
-- the pool's size - 1) and a claim gives its place up, so any replica may refill a pool at once
-- and no two replicas over-fill it. Sandboxes already there take places in id order.
ALTER TABLE pool_sandboxes ADD COLUMN slot INTEGER;
UPDATE pool_sandboxes SET slot = (
    SELECT COUNT(*) FROM pool_sandboxes AS o
    WHERE o.template_id = pool_sandboxes.template_id AND o.state <> 'claimed' AND o.id < pool_sandboxes.id
) WHERE state <> 'claimed';
CREATE UNIQUE INDEX pool_sandboxes_slot ON pool_sandboxes (template_id, slot);
