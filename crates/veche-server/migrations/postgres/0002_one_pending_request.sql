-- At most one pending upgrade request per organisation, even when two are filed at once.
CREATE UNIQUE INDEX upgrade_requests_one_pending ON upgrade_requests(org_id) WHERE status = 'pending';
