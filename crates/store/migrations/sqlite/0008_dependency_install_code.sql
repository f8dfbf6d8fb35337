-- The stable code of a session's last failed dependency install (`package_not_found`, ...), and
-- whether code is refused while the packages its creation asked for failed to install.
ALTER TABLE sessions ADD COLUMN dependency_install_error_code TEXT NULL;
ALTER TABLE sessions ADD COLUMN fail_on_dependency_error INTEGER NOT NULL DEFAULT 0;
