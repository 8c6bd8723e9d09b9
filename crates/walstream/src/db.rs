//! The per-database replication loop.
