-- End-to-end encryption of a meeting's media: 'off' or 'required' (docs/e2ee.md). Existing
-- meetings keep working as they did.
ALTER TABLE meetings ADD COLUMN e2ee TEXT NOT NULL DEFAULT 'off';
