//! Meteor's EJSON ("extended JSON"), as used on the DDP wire (spec §2).
//!
//! EJSON is JSON plus tagged objects for dates, binary data, NaN/±Infinity and regular
//! expressions. This crate is the single definition of those rules for Exosphere:
//!
//! * [`Ejson`] is the value model (ordered objects, `EJSON.equals`-like equality);
//! * [`Ejson::from_json`] / [`parse`] decode, following Meteor's converter order exactly;
//!   [`Decoded`] does the same while a larger document is parsed (DDP frames), in one pass;
//! * [`Ejson::to_json`] / [`Ejson::to_json_string`] encode, escaping look-alike objects;
//! * [`Ejson::to_plain_json`] / [`plain_json_text`] lower to the plain JSON that
//!   `JSON.parse`-only clients need (compressed sync pages, spec §3.7).
//!
//! It is split from the DDP crate so the catalog can use EJSON without DDP sessions.

mod decode;
mod encode;
mod error;
mod iso_date;
mod plain;
mod tag;
mod value;

pub use decode::{Decoded, parse};
pub use error::{EjsonError, json_kind};
pub use plain::{plain_json_text, push_plain_if_dates_only};
pub use value::{Ejson, EjsonMap, NonFinite};
