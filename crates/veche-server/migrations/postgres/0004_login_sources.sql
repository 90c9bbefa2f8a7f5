-- The addresses each account last signed in from (at most a few per account): a login from
-- one of them skips the per-account slow-down an attacker elsewhere may have triggered.
CREATE TABLE login_sources (
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    ip TEXT NOT NULL,
    last_success BIGINT NOT NULL,
    PRIMARY KEY (user_id, ip)
);

-- Audit retention deletes by age.
CREATE INDEX audit_at ON audit_log(at);
