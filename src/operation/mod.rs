//! The operation layer: what a command runs, as cargo's `ops` (commands turn arguments
//! into options and call one operation). It sits on top and may use every stage.

pub mod load;
