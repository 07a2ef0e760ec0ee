//! The scenario module's tests, a file per concern (kept out of the code
//! files, which stay short).
#[path = "error_tests.rs"]
mod error;
#[path = "intruders_tests.rs"]
mod intruders;
#[path = "parse_tests.rs"]
mod parse;
#[path = "render_tests.rs"]
mod render;
#[path = "validate_tests.rs"]
mod validate;
#[path = "validate_command_tests.rs"]
mod validate_command;
#[path = "validate_fault_tests.rs"]
mod validate_fault;
#[path = "validate_shape_tests.rs"]
mod validate_shape;

/// What the tests check of an error (its fields are public; these read
/// them for the `Invalid` case).
impl super::ScenarioError {
    /// The dotted key path (`None` for a read error).
    pub(crate) fn key(&self) -> Option<&str> {
        match self {
            super::ScenarioError::Read { .. } => None,
            super::ScenarioError::Invalid { key, .. } => Some(key),
        }
    }

    /// `(line, column)`, both 1-based.
    pub(crate) fn position(&self) -> Option<(usize, usize)> {
        match self {
            super::ScenarioError::Read { .. } => None,
            super::ScenarioError::Invalid { line, column, .. } => Some((*line, *column)),
        }
    }
}
