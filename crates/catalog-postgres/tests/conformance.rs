//! The store contract of `exosphere-catalog` (its `conformance` module), run on PostgreSQL.

mod common;

use common::temp_stores;

exosphere_catalog::conformance_tests!(temp_stores());
