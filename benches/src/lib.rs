//! Benchmarks of the Kowabunga dataplane.
