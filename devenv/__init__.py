"""Development environment: real OpenStack services for tests, the demo and benchmarks."""
