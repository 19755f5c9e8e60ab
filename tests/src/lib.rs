//! Test support for Kowabunga: the reference model, packet fixtures and labs.
pub mod lab;
