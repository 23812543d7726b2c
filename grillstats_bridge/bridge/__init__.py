"""The daemon's wiring: threads, the poller, the pipeline, the schedule, the outbox, health."""
