"""The shared test harness: simulated services, clusters, viewers, free ports."""
