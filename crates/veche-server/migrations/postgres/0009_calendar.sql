-- Calendar invites and feeds (docs/calendar.md).
--
-- `sequence` is the iCalendar SEQUENCE of the meeting's event: bumped by every change, so a
-- calendar app that has the invite replaces it with the newer one.
ALTER TABLE meetings ADD COLUMN sequence BIGINT NOT NULL DEFAULT 0;

-- One private feed per user: the SHA-256 of its 256-bit token, never the token.
CREATE TABLE calendar_feeds (
    user_id TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

-- Invitations by email: the log, which is also the outbox. `message` is the whole RFC 5322
-- message as written when the invitation was asked for (it may carry the passcode), kept
-- only until it is sent or given up; `status` is `pending`, `sent` or `failed`. Times in
-- Unix milliseconds.
CREATE TABLE meeting_invites (
    id TEXT PRIMARY KEY,
    meeting_id TEXT NOT NULL REFERENCES meetings(id) ON DELETE CASCADE,
    sender_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    message TEXT,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_ms BIGINT NOT NULL,
    last_error TEXT,
    created_at_ms BIGINT NOT NULL,
    sent_at_ms BIGINT
);
CREATE INDEX meeting_invites_due ON meeting_invites(status, next_attempt_ms);
CREATE INDEX meeting_invites_meeting ON meeting_invites(meeting_id, created_at_ms);
CREATE INDEX meeting_invites_sender ON meeting_invites(sender_id, created_at_ms);
