//! The operation layer: one operation per user verb, as cargo's `ops` and OpenTofu's
//! backend operations. A command turns its arguments into a request, runs the operation
//! in a [`Context`] and renders what comes back; the operation does the work.
//!
//! Every operation takes the run's one [`Workspace`] (the configuration layers, read
//! once) and composes whatever it needs from it: the selected environment for the plan,
//! every environment for the promotion gate, the environment's model for the ready
//! signal after an apply.
//!
//! - [`plan`]: load → desired resources → lock state → refresh and diff → a plan;
//! - [`apply`]: the promotion gate, plan, approval, the parallel apply with progress,
//!   the ready signal's look after it; a saved plan applied as it is;
//! - [`destroy`]: the deletion of everything in scope, dependants first;
//! - [`bootstrap`]: apply each environment in promotion order and wait for its
//!   clusters' ready signals; `--render` writes manifests and machine configs instead;
//! - [`graph`]: the resource graph the plan would walk;
//! - [`import`]: adopt an existing object as a configured resource;
//! - [`talos`]: a talosconfig and the rendered machine configs of a cluster;
//! - [`load`]: the [`Workspace`], models and desired resources composed from it;
//! - [`promotion_gate`]: apply an environment only with what its predecessor applied.

pub mod apply;
pub mod bootstrap;
mod context;
pub mod destroy;
mod diagnostic;
pub mod graph;
pub mod import;
pub mod load;
pub mod plan;
mod progress;
pub mod promotion_gate;
pub mod talos;

pub use context::{Context, Prompt, Sink};
pub use diagnostic::{diagnostic, diagnostic_text};
pub use load::Workspace;
pub use progress::{ProgressReporter, Step, Steps, watch_interrupts};
