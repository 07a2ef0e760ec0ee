//! Redis key names: defined in the protocol crate (`recovery_protocol::keys`)
//! so the harness reads the same layout without the server's store.

pub use recovery_protocol::keys::*;
