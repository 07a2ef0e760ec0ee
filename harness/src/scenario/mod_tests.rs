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
