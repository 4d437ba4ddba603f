//! The local index as the sink of the sync client's page loop: each page goes into
//! `Index::apply_page` with its token, in one index transaction.

use std::fmt;

use exosphere_index::{Index, PageApplied, SyncPage};
use exosphere_sync_client::{Page, PageSink, Pass, SyncError};

/// The index a pass fills.
pub(crate) struct IndexSink<'a>(pub(crate) &'a mut Index);

impl PageSink for IndexSink<'_> {
    type Applied = PageApplied;

    fn token(&mut self) -> Result<Option<String>, SyncError> {
        self.0
            .sync_token()
            .map_err(|error| SyncError::Sink(error.into()))
    }

    fn apply(&mut self, page: &Page<'_>) -> Result<PageApplied, SyncError> {
        let page = SyncPage {
            reset_data: page.reset_data,
            up_to_date: page.up_to_date,
            sync_token: page.sync_token,
            collections: page.collections.clone(),
        };
        self.0
            .apply_page(&page)
            .map_err(|error| SyncError::Sink(error.into()))
    }
}

/// What a pass did, with what the index made of it: the summary `sync` prints.
pub(crate) struct Summary {
    /// The pass.
    pub(crate) pass: Pass,
    /// Records of a shape spec §3.8 does not describe, kept as sent but left out of
    /// queries ([`PageApplied::raw_only`]).
    pub(crate) raw_only: u64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.pass)?;
        if self.raw_only > 0 {
            let (n, records, were) = match self.raw_only {
                1 => (1, "record", "was"),
                n => (n, "records", "were"),
            };
            write!(
                f,
                "; warning: {n} {records} of an unexpected shape {were} kept as sent, outside \
                 search, show and deps"
            )?;
        }
        Ok(())
    }
}
