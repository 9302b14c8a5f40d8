"""Benchmarks: HMC requests per Nova operation, the gRPC hop, many hosts (`make bench`)."""
