//! Scenario files: the typed model, and parsing TOML into it with errors
//! that name the file, line and a hint.

mod error;
mod model;
mod parse;
mod reader;
mod render;
mod units;
mod validate;

pub use error::{ScenarioError, UnitError};
pub use model::*;
pub use parse::{load_scenario, parse_scenario};
pub use render::render_scenario;
pub use units::{
    format_duration, format_percentile, format_rate, format_size, parse_duration, parse_percentile,
    parse_rate, parse_size,
};
