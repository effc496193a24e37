//! The file as written: serde structures mirroring the TOML (filled in by the config work).
