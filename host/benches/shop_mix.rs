//! The shop under a realistic mix (work in progress).
fn main() {}
