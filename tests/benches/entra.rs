//! Entra ID sync benchmark (issue 4): filled in by the next commit.
fn main() {}
