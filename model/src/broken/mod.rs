//! Designs that get the drain wrong, as seen in public implementations. Each
//! is modelled faithfully enough that the checker finds its counterexample
//! to "no call into a finalized version" (the tests pin the shortest trace).

pub mod phantom_refs;
pub mod ring;
