-- Ids of deleted meetings. A join for one of them is refused (meeting_not_found) instead of
-- falling back to an instant guest room of the same name, which would let anyone with the id
-- into what is left of the meeting without its passcode or waiting room. Kept for good: ids
-- are random (100 bits), so the table only grows by one short row per deleted meeting.
CREATE TABLE deleted_meetings (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    deleted_at BIGINT NOT NULL
);
