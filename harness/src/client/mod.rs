//! The simulated devices: one task per socket.
