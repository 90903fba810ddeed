-- Runs last, once the Rust functions exist.

-- Ingest's statements are written to be index probes whatever the batch size, so they run with
-- generic plans: re-planning them on every call was a quarter of the time of single-event ingest
-- (perf on the backend: GetCachedPlan -> pg_plan_queries). A generic plan is costed with the
-- statistics of the moment it is made, and a plan made while the tables were still empty chose
-- sequential scans that then ran on every call as the room grew (measured: 784 instead of 4,000+
-- events/s after 70,000 events). enable_seqscan = off keeps those plans on the indexes; it applies
-- only while these functions run.
ALTER FUNCTION roomserver.ingest_event(jsonb, text, boolean) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION roomserver.ingest_event(jsonb, text, boolean) SET enable_seqscan = off;
ALTER FUNCTION roomserver.ingest_events(jsonb, text, boolean) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION roomserver.ingest_events(jsonb, text, boolean) SET enable_seqscan = off;
