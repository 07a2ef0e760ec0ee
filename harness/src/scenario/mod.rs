//! Scenario files: the typed model, and parsing TOML into it with errors
//! that name the file, line and a hint.

mod model;

pub use model::*;
