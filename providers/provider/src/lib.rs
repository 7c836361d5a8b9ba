//! The provider contract. Filled in by the engine issue.
