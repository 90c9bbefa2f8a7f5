-- Running meetings, so that a restart (or a crash) does not end them: the SFU's latest
-- snapshot of each (host policy, roles, host mutes, lock, bars, who was in it) as JSON,
-- written behind the media path and deleted when the meeting ends. Read once at start.
CREATE TABLE live_meetings (
    room TEXT PRIMARY KEY,
    snapshot TEXT NOT NULL,
    saved_at BIGINT NOT NULL
);

-- Secrets the server generates for itself and must keep across restarts: `resume_key` signs
-- guests' resume tokens (hex, 32 bytes).
CREATE TABLE server_secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
