//! The checker: judges a recorded history against the message log.

mod outcome;

pub use outcome::*;
