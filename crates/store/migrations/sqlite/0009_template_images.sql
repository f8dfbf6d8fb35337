-- Whether a template's image is there (`ready`), being pulled (`pulling`) or could not be pulled
-- (`failed`), and the last pull's progress and error (a JSON object). Existing templates had to
-- name an image the runtime had: they are ready.
ALTER TABLE templates ADD COLUMN status TEXT NOT NULL DEFAULT 'ready';
ALTER TABLE templates ADD COLUMN image_pull TEXT NULL;
