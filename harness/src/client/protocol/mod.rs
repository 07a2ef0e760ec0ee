//! Wire protocols the simulated devices can speak, one module per adapter.
pub mod socketio;
