//! Meteor's vocabulary, defined once for every crate that speaks it: the package version
//! format and order ([`version`]), the five synced collections and their wire names
//! ([`collection`]), and the package name rules ([`names`]).
//!
//! The server (`exosphere-catalog` and the binary), the local index (`exosphere-index`)
//! and the synthetic catalog generator (`exosphere-synth`) must agree on these rules and
//! none of them may depend on another, so the rules live here, with nothing but the
//! standard library and `thiserror` beneath them.

pub mod collection;
pub mod names;
pub mod version;

pub use collection::{Collection, PerCollection, UnknownCollection};
pub use version::{MeteorVersion, VersionError};
