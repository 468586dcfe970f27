"""The staged rollout: the pure engine, its evidence, the service that runs it, route sync."""
