//! Loads, attaches, pins and drives the Kowabunga XDP programs.
