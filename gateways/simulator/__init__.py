"""An HTTP acquirer simulator for tests, drills and benchmarks (stdlib asyncio)."""
