"""What the tests share, and no test of its own: `oracle` (the integration tests' oracle and the
comparison with a worker's output), `driver` (feeding the core one record at a time) and
`strategies/` (the hypothesis strategies, by subject). The deployment kit the integration tests
run workers with is `devtools/deployment.py`, shared with the benchmarks."""
