//! Scenario files: the file schema (`file.rs`, serde), the typed model
//! (`model.rs`), and parsing TOML into it with errors that name the file,
//! line, column, key path and a hint. Values with units use the grammar
//! shared with the server's flags (`recovery-units`).

mod de;
mod error;
mod file;
mod intruders;
mod model;
mod names;
mod parse;
mod render;
mod validate;

pub use error::ScenarioError;
pub use intruders::{IntruderKind, Intruders};
pub use model::*;
pub use parse::{load_scenario, parse_scenario};
pub use recovery_units::{
    format_duration, format_percentile, format_rate, format_size, parse_duration, parse_percentile,
    parse_rate, parse_size, UnitError,
};
pub use render::render_scenario;
