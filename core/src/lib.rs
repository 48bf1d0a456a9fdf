//! KeyTrail's protocol core: the spec in code.
//!
//! Everything every party (server, client, auditor, witness) computes or checks lives here,
//! written once. There is no I/O, no async and no networking in this crate: storage reaches the
//! proof builders through the narrow [`merkle::HashReader`] trait, and callers pass in time and
//! trust explicitly. The byte-level description is in `docs/protocol.md`.

pub mod checkpoint;
pub mod cosignature;
pub mod directory;
mod edwards;
pub mod entry;
#[doc(hidden)]
pub mod fuzz;
pub mod hash;
pub mod map;
pub mod merkle;
pub mod note;
pub mod tiles;
pub mod trust;
pub mod vrf;
