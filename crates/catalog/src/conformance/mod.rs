//! The store contract as tests, written once against [`CatalogStore`] and run on every
//! backend (compiled with the `testing` feature).
//!
//! Each `pub fn` here is one test body taking a [`NewStore`] factory, which makes a fresh,
//! empty store of the backend under test. A backend crate runs them all by stamping one
//! `#[test]` per body with [`conformance_tests!`](crate::conformance_tests), from one of its
//! test files:
//!
//! ```text
//! exosphere_catalog::conformance_tests!(temp_stores());
//! ```
//!
//! where `temp_stores()` evaluates (once per test) to a `Fn() -> Arc<dyn CatalogStore>`
//! that owns whatever the stores need until the test ends (e.g. temporary directories).
//! Behaviour only one backend has (its schema migrations, file locking) is tested in that
//! backend's crate.

use std::sync::Arc;

use crate::error::StoreError;
use crate::store::{CatalogStore, CatalogWriter};

pub mod accounts;
pub mod audit;
pub mod bulk;
pub mod dump;
pub mod immutable;
pub mod mirror;
pub mod page_cache;
pub mod stats;
pub mod store;
pub mod sync;
pub mod transact;
pub mod usage;
pub mod watch;

/// Makes a fresh, empty store of the backend under test; a test may call it more than once.
pub type NewStore<'a> = &'a dyn Fn() -> Arc<dyn CatalogStore>;

/// Runs `f` in one write transaction and returns what it returned; shared with backends'
/// own tests.
pub fn with<T>(
    store: &dyn CatalogStore,
    mut f: impl FnMut(&mut dyn CatalogWriter) -> Result<T, StoreError>,
) -> T {
    let mut out = None;
    store
        .write(&mut |w| {
            out = Some(f(w)?);
            Ok(())
        })
        .unwrap();
    out.unwrap()
}

/// A current-thread Tokio runtime with time and I/O, as `#[tokio::test]` builds, for the
/// bodies that need one (they are plain functions, so the backend's tests need no macro).
fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime")
}

/// Stamps one `#[test]` per conformance body, in one module per area (`store`, `sync`,
/// …), each calling the body with the factory `$new_store` (an expression evaluated once
/// per test, in a child module of the caller that sees the caller's items). A new body is
/// added here and in its module; a new backend adds one invocation of this macro.
#[macro_export]
macro_rules! conformance_tests {
    ($new_store:expr) => {
        $crate::conformance_tests! {
            @stamp $new_store;
            store: upsert_assigns_increasing_seq_and_skips_identical_text, pages_respect_cursors_and_limit, pages_are_cut_by_bytes_across_collections, a_record_beyond_the_count_takes_none_of_the_byte_budget, failed_write_rolls_back_everything, get_reads_inside_the_transaction, delete_starts_a_new_epoch_and_counts_a_change, stats_rows_upsert_and_day_range, natural_keys_find_records, unusual_text_round_trips_and_keys_sort_by_bytes;
            accounts: accounts_tokens_uploads_and_pending_publishes_round_trip, upload_tickets_are_read_with_their_owner_and_receiving_ones_reopen, a_put_ends_only_the_ticket_it_claimed, a_server_reopens_its_receiving_marks_it_holds_no_slot_for;
            audit: audit_entries_commit_with_their_write_and_read_back_filtered;
            immutable: published_versions_and_builds_keep_their_content;
            sync: empty_store_answers_all_five_arrays_and_a_token, default_tokens_start_from_zero_without_reset, non_object_tokens_are_refused, short_pages_resume_and_settle_on_the_same_token, changed_records_are_sent_again, foreign_or_stale_tokens_reset_exactly_once, deletion_resets_clients_once, a_new_epoch_resets_clients_once, records_are_spliced_verbatim, compressed_collections_are_plain_json_with_iso_dates, zero_page_sizes_still_make_progress, byte_cut_pages_send_every_record_exactly_once;
            page_cache: a_prefetched_page_is_served_and_equals_a_fresh_one, a_prefetch_computes_two_pages_ahead, a_write_invalidates_cached_pages, the_cache_stays_within_its_byte_bound, caching_can_be_turned_off, evicted_pages_are_served_from_files_with_their_forms, a_write_invalidates_page_files_and_they_stay_bounded, page_files_are_discarded_at_start_and_checked_when_read, clients_asking_at_once_share_one_computation, a_failed_prefetch_leaves_no_page_pending, a_page_whose_computation_panicked_is_not_left_pending, a_prefetch_stops_at_a_page_it_could_not_cache;
            mirror: mirror_state_commits_with_the_records, staged_records_are_invisible_and_page_in_id_order, a_stage_moves_into_an_empty_catalog_as_upserts_would, mirror_files_map_keys_to_upstream_files, staged_files_take_effect_when_served, claims_are_kept_by_kind_and_name;
            dump: imports_and_exports_a_small_dump, errors_name_the_line_and_store_nothing, invalid_utf8_and_long_lines_are_refused, read_errors_store_nothing, write_errors_are_reported, reimport_is_unchanged_and_later_lines_win;
            stats: package_ranges_sum_per_period_and_version_with_a_trend;
            transact: write_or_refuse_commits_what_the_body_wrote, write_or_refuse_rolls_back_a_refusal_and_returns_its_reason, write_or_refuse_rolls_back_a_store_error;
            usage: several_days_roll_up_to_hand_computed_rows, a_rollup_of_today_is_not_advertised, rollup_replaces_imported_rows_of_recorded_days_only, the_recorder_counts_only_versions_the_catalog_holds;
            watch: zero_interval_is_accepted_and_task_stops_with_receivers;
        }
    };
    (@stamp $new_store:expr; $($area:ident: $($body:ident),+;)+) => {
        $(
            mod $area {
                #[allow(unused_imports)]
                use super::*;
                $(
                    #[test]
                    fn $body() {
                        let new_store = $new_store;
                        $crate::conformance::$area::$body(&new_store);
                    }
                )+
            }
        )+
    };
}
