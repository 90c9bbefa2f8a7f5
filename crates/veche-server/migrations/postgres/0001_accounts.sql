-- Accounts, organisations, plans, meetings, usage and the audit log (PostgreSQL dialect).
-- Times are Unix seconds; flags are 0/1 integers, so the same queries and Rust types work on
-- SQLite (see ../sqlite/0001_accounts.sql, which differs only in the audit sequence).

CREATE TABLE plans (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    -- NULL means "no cap".
    max_participants BIGINT,
    max_duration_minutes BIGINT,
    recording BIGINT NOT NULL,
    breakout_rooms BIGINT NOT NULL,
    e2ee_required BIGINT NOT NULL,
    large_meetings BIGINT NOT NULL,
    position BIGINT NOT NULL
);

INSERT INTO plans VALUES ('free', 'Free', 100, 40, 0, 0, 0, 0, 0);
INSERT INTO plans VALUES ('pro', 'Pro', 300, NULL, 1, 1, 0, 0, 1);
INSERT INTO plans VALUES ('business', 'Business', NULL, NULL, 1, 1, 0, 1, 2);

CREATE TABLE orgs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    plan_id TEXT NOT NULL REFERENCES plans(id),
    created_at BIGINT NOT NULL
);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    -- Stored lower-case, so UNIQUE is case-insensitive.
    email TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    org_role TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX users_org ON users(org_id);

CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE meetings (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    owner_id TEXT NOT NULL REFERENCES users(id),
    title TEXT NOT NULL,
    starts_at BIGINT,
    duration_minutes BIGINT NOT NULL,
    recurrence TEXT NOT NULL,
    passcode_hash TEXT,
    waiting_room BIGINT NOT NULL,
    join_before_host BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX meetings_owner ON meetings(owner_id);
CREATE INDEX meetings_org ON meetings(org_id);

CREATE TABLE meeting_cohosts (
    meeting_id TEXT NOT NULL REFERENCES meetings(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (meeting_id, user_id)
);
CREATE INDEX meeting_cohosts_user ON meeting_cohosts(user_id);

CREATE TABLE upgrade_requests (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    requested_by TEXT NOT NULL REFERENCES users(id),
    plan_id TEXT NOT NULL REFERENCES plans(id),
    note TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    decided_by TEXT,
    decided_at BIGINT
);

CREATE TABLE usage_records (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    meeting_id TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    ended_at BIGINT NOT NULL,
    peak_participants BIGINT NOT NULL,
    participant_minutes BIGINT NOT NULL
);
CREATE INDEX usage_org ON usage_records(org_id, started_at);

CREATE TABLE audit_log (
    seq BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    actor_id TEXT,
    actor_email TEXT,
    ip TEXT,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    org_id TEXT,
    detail TEXT NOT NULL
);
CREATE INDEX audit_org ON audit_log(org_id, seq);

-- Failed login / passcode attempts per key (an account, a meeting or an IP).
CREATE TABLE lockouts (
    key TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    window_start BIGINT NOT NULL,
    locked_until BIGINT NOT NULL
);
