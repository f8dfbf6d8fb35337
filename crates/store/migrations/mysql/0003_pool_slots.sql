-- Places in a pool: each starting or ready pool sandbox holds one of its template's places (0 to
-- the pool's size - 1) and a claim gives its place up, so any replica may refill a pool at once
-- and no two replicas over-fill it. Sandboxes already there take places in id order (the grouped
-- derived table is materialized, so the table may be read while it is updated).
ALTER TABLE pool_sandboxes ADD COLUMN slot INT NULL;
UPDATE pool_sandboxes AS p JOIN (
    SELECT a.id, COUNT(o.id) AS n FROM pool_sandboxes AS a
    LEFT JOIN pool_sandboxes AS o ON o.template_id = a.template_id AND o.state <> 'claimed' AND o.id < a.id
    WHERE a.state <> 'claimed' GROUP BY a.id
) AS r ON r.id = p.id
SET p.slot = r.n;
ALTER TABLE pool_sandboxes ADD UNIQUE KEY pool_sandboxes_slot (template_id, slot);
