//! The Kowabunga node daemon: configuration, reconciliation, supervision.
