//! Storage tiers: a byte-bounded memory tier and a crash-safe disk tier. Storage never parses
//! a header; it keeps heads and bodies under key hashes.

pub mod codec;
pub mod disk;
pub mod mapped;
pub mod memory;
pub mod pack;
pub mod scan;
