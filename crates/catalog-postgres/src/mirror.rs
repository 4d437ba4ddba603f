//! The upstream mirror's rows ([`exosphere_catalog::mirror`]).
//!
//! * `mirror_state`: one row (`id = 1`) with the upstream URL, its tokens, a held reason and
//!   the last success and error;
//! * `mirror_stage`: the staged catalog, one row per `(collection, id)` (unique), numbered
//!   by `ord` in the order last staged; invisible to sync pages, which read only the `rec_*`
//!   tables. Serving the stage moves it into the empty `rec_*` tables in one
//!   `INSERT … SELECT` per collection, numbered in `ord` order, without a row going through
//!   Rust;
//! * `mirror_files`: served file key → upstream URL, the SHA-256 its bytes must have, and its
//!   size once cached (a partial index of the cached ones answers `/healthz`);
//! * `mirror_stage_files`: the file entries of staged records, in arrival order (`ord`),
//!   moved into `mirror_files` when the stage is served;
//! * `mirror_claims`: names taken over from the upstream for local publishing.

use exosphere_catalog::columns::{snake, to_i64, to_u64};
use exosphere_catalog::error::StoreError;
use exosphere_catalog::mirror::{Claim, MirrorState, MirrorWriter, UpstreamFile};
use exosphere_catalog::record::Record;
use exosphere_meteor::{Collection, PerCollection};

use crate::keys::{DUPLICATE_KEYS, key_columns};
use crate::session::{Session, col};
use crate::writer::PgWriter;

/// The upsert of one file entry (`$1, $2, $3`: key, url, sha256) or, with the values clause
/// replaced, of a query's entries: only an entry without a hash changes, and one that gets a
/// hash is no longer counted as cached (`MirrorWriter::put_file`).
const UPSERT_FILE: &str = "ON CONFLICT (key) DO UPDATE SET url = excluded.url, \
     sha256 = excluded.sha256, cached_size = CASE WHEN mirror_files.sha256 IS NOT DISTINCT \
     FROM excluded.sha256 THEN mirror_files.cached_size END \
     WHERE mirror_files.sha256 IS NULL AND (mirror_files.url IS DISTINCT FROM excluded.url \
     OR mirror_files.sha256 IS DISTINCT FROM excluded.sha256)";

/// The mirror's state row, if any.
pub(crate) fn state(s: &mut Session<'_, '_>) -> Result<Option<MirrorState>, StoreError> {
    let Some(row) = s.query_opt(
        "SELECT upstream, token, staging_token, held, last_success, last_error_at, last_error, \
         sync_requested FROM mirror_state WHERE id = 1",
        &[],
    )?
    else {
        return Ok(None);
    };
    let error_at: Option<i64> = col(&row, 5)?;
    let error: Option<String> = col(&row, 6)?;
    Ok(Some(MirrorState {
        upstream: col(&row, 0)?,
        token: col(&row, 1)?,
        staging_token: col(&row, 2)?,
        held: col(&row, 3)?,
        last_success_ms: col(&row, 4)?,
        last_error: error_at.zip(error),
        sync_requested_ms: col(&row, 7)?,
    }))
}

/// The upstream file behind a served key.
pub(crate) fn file(s: &mut Session<'_, '_>, key: &str) -> Result<Option<UpstreamFile>, StoreError> {
    s.query_opt(
        "SELECT url, sha256 FROM mirror_files WHERE key = $1",
        &[&key],
    )?
    .map(|row| {
        Ok(UpstreamFile {
            url: col(&row, 0)?,
            sha256: col(&row, 1)?,
        })
    })
    .transpose()
}

/// How many mirrored files are cached, and their bytes, read from their partial index.
pub(crate) fn cached(s: &mut Session<'_, '_>) -> Result<(u64, u64), StoreError> {
    let row = s.query_one(
        "SELECT count(*), coalesce(sum(cached_size), 0)::bigint FROM mirror_files \
         WHERE cached_size IS NOT NULL",
        &[],
    )?;
    Ok((
        to_u64(col(&row, 0)?, "cached files")?,
        to_u64(col(&row, 1)?, "cached bytes")?,
    ))
}

/// A page of file keys in key order.
pub(crate) fn files(
    s: &mut Session<'_, '_>,
    after: &str,
    limit: usize,
) -> Result<Vec<(String, UpstreamFile)>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    s.query(
        "SELECT key, url, sha256 FROM mirror_files WHERE key > $1 ORDER BY key LIMIT $2",
        &[&after, &limit],
    )?
    .iter()
    .map(|row| {
        Ok((
            col(row, 0)?,
            UpstreamFile {
                url: col(row, 1)?,
                sha256: col(row, 2)?,
            },
        ))
    })
    .collect()
}

impl PgWriter<'_, '_, '_> {
    /// Appends every staged record to its (empty) `rec_*` table in the order staged, with the
    /// sequence numbers and change counts one upsert each would have given, inside a
    /// savepoint that is kept only if no two served records then share a natural key;
    /// returns how many moved, or `None` (nothing changed) on such a duplicate.
    fn move_stage(&mut self) -> Result<Option<u64>, StoreError> {
        self.s.batch("SAVEPOINT serve_stage")?;
        let mut head = self.head_seq();
        let mut counts = Vec::new();
        for collection in Collection::ALL {
            let count = self.s.execute(
                &format!(
                    "INSERT INTO rec_{} (seq, id, last_updated, json, key1, key2) \
                     SELECT $1 + row_number() OVER (ORDER BY ord), id, last_updated, json, \
                     key1, key2 FROM mirror_stage WHERE collection = $2",
                    snake(collection)
                ),
                &[&to_i64(head, "head_seq")?, &collection.as_str()],
            )?;
            head = head.saturating_add(count);
            counts.push((collection, count));
        }
        for sql in DUPLICATE_KEYS {
            if self.s.query_opt(sql, &[])?.is_some() {
                return self
                    .s
                    .batch("ROLLBACK TO SAVEPOINT serve_stage; RELEASE SAVEPOINT serve_stage")
                    .map(|()| None);
            }
        }
        self.s.batch("RELEASE SAVEPOINT serve_stage")?;
        for &(collection, count) in &counts {
            self.appended(collection, count)?;
        }
        Ok(Some(counts.iter().map(|(_, count)| count).sum()))
    }
}

impl MirrorWriter for PgWriter<'_, '_, '_> {
    fn state(&mut self) -> Result<Option<MirrorState>, StoreError> {
        state(self.s)
    }

    fn put_state(&mut self, state: &MirrorState) -> Result<(), StoreError> {
        let (error_at, error) = match &state.last_error {
            Some((at, error)) => (Some(*at), Some(error.as_str())),
            None => (None, None),
        };
        self.s.execute(
            "INSERT INTO mirror_state (id, upstream, token, staging_token, held, \
             last_success, last_error_at, last_error, sync_requested) \
             VALUES (1, $1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (id) DO UPDATE SET upstream = excluded.upstream, \
             token = excluded.token, staging_token = excluded.staging_token, \
             held = excluded.held, last_success = excluded.last_success, \
             last_error_at = excluded.last_error_at, last_error = excluded.last_error, \
             sync_requested = excluded.sync_requested",
            &[
                &state.upstream,
                &state.token,
                &state.staging_token,
                &state.held,
                &state.last_success_ms,
                &error_at,
                &error,
                &state.sync_requested_ms,
            ],
        )?;
        Ok(())
    }

    fn stage(&mut self, record: &Record) -> Result<(), StoreError> {
        // Staging again replaces the record and moves it to the end of the order, as a
        // delete and insert would.
        let [key1, key2] = key_columns(record.collection(), record.json());
        self.s.execute(
            "INSERT INTO mirror_stage (collection, id, json, last_updated, key1, key2) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (collection, id) DO UPDATE SET json = excluded.json, \
             last_updated = excluded.last_updated, ord = excluded.ord, \
             key1 = excluded.key1, key2 = excluded.key2",
            &[
                &record.collection().as_str(),
                &record.id(),
                &record.json(),
                &record.last_updated(),
                &key1,
                &key2,
            ],
        )?;
        Ok(())
    }

    fn staged(
        &mut self,
        collection: Collection,
        after: &str,
        limit: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.s
            .query(
                "SELECT id, json FROM mirror_stage WHERE collection = $1 AND id > $2 \
                 ORDER BY id LIMIT $3",
                &[&collection.as_str(), &after, &limit],
            )?
            .iter()
            .map(|row| Ok((col(row, 0)?, col(row, 1)?)))
            .collect()
    }

    fn staged_counts(&mut self) -> Result<PerCollection<u64>, StoreError> {
        let mut counts = PerCollection::from_fn(|_| 0);
        for collection in Collection::ALL {
            let row = self.s.query_one(
                "SELECT count(*) FROM mirror_stage WHERE collection = $1",
                &[&collection.as_str()],
            )?;
            counts[collection] = to_u64(col(&row, 0)?, "staged count")?;
        }
        Ok(counts)
    }

    fn served_counts(&mut self) -> Result<PerCollection<u64>, StoreError> {
        let mut counts = PerCollection::from_fn(|_| 0);
        for collection in Collection::ALL {
            let row = self.s.query_one(
                &format!("SELECT count(*) FROM rec_{}", snake(collection)),
                &[],
            )?;
            counts[collection] = to_u64(col(&row, 0)?, "record count")?;
        }
        Ok(counts)
    }

    fn is_staged(&mut self, collection: Collection, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .s
            .query_opt(
                "SELECT 1 FROM mirror_stage WHERE collection = $1 AND id = $2",
                &[&collection.as_str(), &id],
            )?
            .is_some())
    }

    fn clear_stage(&mut self) -> Result<(), StoreError> {
        self.s
            .batch("DELETE FROM mirror_stage; DELETE FROM mirror_stage_files;")
    }

    fn stage_file(&mut self, key: &str, file: &UpstreamFile) -> Result<(), StoreError> {
        self.s.execute(
            "INSERT INTO mirror_stage_files (key, url, sha256) VALUES ($1, $2, $3)",
            &[&key, &file.url, &file.sha256],
        )?;
        Ok(())
    }

    fn serve_staged_files(&mut self) -> Result<(), StoreError> {
        // The entries of one key take effect in the order staged, as one `put_file` each
        // would. One statement cannot touch a row twice, so the first entry of every key
        // goes in with one statement, in key order, and the rare later entries of a key
        // (a file staged twice) one by one after it, found by numbering each key's entries
        // in one sort (a correlated `min(ord)` per row would scan the stage once per row).
        self.s.batch(&format!(
            "INSERT INTO mirror_files (key, url, sha256) \
             SELECT DISTINCT ON (key) key, url, sha256 FROM mirror_stage_files \
             ORDER BY key, ord {UPSERT_FILE}"
        ))?;
        let later = self.s.query(
            "SELECT key, url, sha256 FROM (SELECT key, url, sha256, ord, \
             row_number() OVER (PARTITION BY key ORDER BY ord) AS nth \
             FROM mirror_stage_files) f WHERE nth > 1 ORDER BY ord",
            &[],
        )?;
        for row in &later {
            let key: String = col(row, 0)?;
            let file = UpstreamFile {
                url: col(row, 1)?,
                sha256: col(row, 2)?,
            };
            self.put_file(&key, &file)?;
        }
        self.s.batch("DELETE FROM mirror_stage_files")
    }

    fn serve_stage(&mut self) -> Result<Option<u64>, StoreError> {
        for collection in Collection::ALL {
            let row = self.s.query_one(
                &format!("SELECT EXISTS (SELECT 1 FROM rec_{})", snake(collection)),
                &[],
            )?;
            if col::<bool>(&row, 0)? {
                return Ok(None);
            }
        }
        let moved = self.move_stage()?;
        if moved.is_some() {
            self.s.batch("DELETE FROM mirror_stage")?;
        }
        Ok(moved)
    }

    fn put_file(&mut self, key: &str, file: &UpstreamFile) -> Result<(), StoreError> {
        self.s.execute(
            &format!(
                "INSERT INTO mirror_files (key, url, sha256) VALUES ($1, $2, $3) {UPSERT_FILE}"
            ),
            &[&key, &file.url, &file.sha256],
        )?;
        Ok(())
    }

    fn mark_cached(&mut self, key: &str, size: Option<u64>) -> Result<(), StoreError> {
        let size = size.map(|size| to_i64(size, "file size")).transpose()?;
        self.s.execute(
            "UPDATE mirror_files SET cached_size = $2 WHERE key = $1",
            &[&key, &size],
        )?;
        Ok(())
    }

    fn claim(&mut self, claim: &Claim) -> Result<(), StoreError> {
        self.s.execute(
            "INSERT INTO mirror_claims (kind, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&claim.kind(), &claim.name()],
        )?;
        Ok(())
    }

    fn is_claimed(&mut self, claim: &Claim) -> Result<bool, StoreError> {
        Ok(self
            .s
            .query_opt(
                "SELECT 1 FROM mirror_claims WHERE kind = $1 AND name = $2",
                &[&claim.kind(), &claim.name()],
            )?
            .is_some())
    }

    fn claims(&mut self) -> Result<Vec<Claim>, StoreError> {
        let rows = self.s.query(
            "SELECT kind, name FROM mirror_claims ORDER BY kind, name",
            &[],
        )?;
        rows.iter()
            .map(|row| {
                let kind: String = col(row, 0)?;
                Claim::from_parts(&kind, col(row, 1)?)
                    .ok_or_else(|| StoreError::Corrupt(format!("unknown claim kind {kind}")))
            })
            .collect()
    }
}
