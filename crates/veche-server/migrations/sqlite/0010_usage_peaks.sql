-- Peak concurrency for the operator's dashboard (docs/dashboard.md).
--
-- The most participants in meetings at once, per organisation and hour: written by the
-- server as people join (and once a minute while anyone is in a meeting, so an hour that a
-- meeting runs through without joins still has its peak). `org_id` '' holds the peak of the
-- whole service, which is not the sum of the organisations' peaks. `hour` is the Unix time
-- in seconds of the start of the hour (UTC).
CREATE TABLE usage_peaks (
    org_id TEXT NOT NULL,
    hour BIGINT NOT NULL,
    participants BIGINT NOT NULL,
    PRIMARY KEY (org_id, hour)
);

-- The service-wide usage series reads finished meetings by start time alone.
CREATE INDEX usage_started ON usage_records(started_at);
