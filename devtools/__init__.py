"""Development tools, not part of the product (not in the wheel or the image): the local
broker, the deployment kit shared by the tests and the benchmarks, and the workload generator."""
