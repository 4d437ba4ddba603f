//! The PostgreSQL side of [`AccountWriter`], and of reading an upload ticket outside a write.

use exosphere_catalog::accounts::{
    AccountWriter, Org, Pending, PendingKind, ReceivingElsewhere, Token, Upload, UploadState,
    UploadTicket, User,
};
use exosphere_catalog::columns::{to_i64, to_u64};
use exosphere_catalog::error::StoreError;
use tokio_postgres::Row;

use crate::servers::live_receiver;
use crate::session::{Params, Session, col};
use crate::writer::PgWriter;

/// A `users` row (`id, username, admin`) as a [`User`].
fn user_row(row: &Row) -> Result<User, StoreError> {
    Ok(User {
        id: col(row, 0)?,
        username: col(row, 1)?,
        admin: col(row, 2)?,
    })
}

/// A `tokens` row (`id, hash, user_id, created, expires`) as a [`Token`].
fn token_row(row: &Row) -> Result<Token, StoreError> {
    Ok(Token {
        id: col(row, 0)?,
        hash: col(row, 1)?,
        user_id: col(row, 2)?,
        created: col(row, 3)?,
        expires: col(row, 4)?,
    })
}

/// The upload ticket with this hash, in a write or a read.
fn upload(s: &mut Session<'_, '_>, hash: &str) -> Result<Option<Upload>, StoreError> {
    let Some(row) = s.query_opt(
        "SELECT staging, destination, max_size, expires, state, size, sha256 \
         FROM uploads WHERE hash = $1",
        &[&hash],
    )?
    else {
        return Ok(None);
    };
    let state: String = col(&row, 4)?;
    Ok(Some(Upload {
        staging: col(&row, 0)?,
        destination: col(&row, 1)?,
        max_size: to_u64(col(&row, 2)?, "upload limit")?,
        expires: col(&row, 3)?,
        state: UploadState::from_columns(&state, col(&row, 5)?, col(&row, 6)?)?,
    }))
}

/// [`exosphere_catalog::CatalogStore::upload_ticket`]: the ticket, and the user of the
/// pending publish that lists it. Pending publishes keep their tickets as a space-separated
/// list that no index covers, so this scans the pending rows; the table holds only
/// unfinished publishes, and only a PUT to an existing ticket gets this far.
pub(crate) fn upload_ticket(
    s: &mut Session<'_, '_>,
    hash: &str,
) -> Result<Option<UploadTicket>, StoreError> {
    let Some(upload) = upload(s, hash)? else {
        return Ok(None);
    };
    let user_id = s
        .query_opt(
            "SELECT user_id FROM pending \
             WHERE strpos(' ' || uploads || ' ', ' ' || $1 || ' ') > 0 LIMIT 1",
            &[&hash],
        )?
        .map(|row| col::<String>(&row, 0))
        .transpose()?;
    Ok(user_id.map(|user_id| UploadTicket { upload, user_id }))
}

impl PgWriter<'_, '_, '_> {
    /// The user that `sql` (selecting `id, username, admin` by one key) finds for `key`.
    fn one_user(&mut self, sql: &str, key: &str) -> Result<Option<User>, StoreError> {
        self.s
            .query_opt(sql, &[&key])?
            .map(|row| user_row(&row))
            .transpose()
    }

    /// Runs `delete`, a `DELETE FROM pending … RETURNING uploads` with `params`, and retires
    /// the upload tickets of every pending publish it deleted; returns how many.
    fn withdraw_pending(&mut self, delete: &str, params: &Params<'_>) -> Result<u64, StoreError> {
        let deleted = self.s.query(delete, params)?;
        for row in &deleted {
            let uploads: String = col(row, 0)?;
            for hash in uploads.split_whitespace() {
                self.retire_upload(hash)?;
            }
        }
        Ok(deleted.len() as u64)
    }
}

impl AccountWriter for PgWriter<'_, '_, '_> {
    fn user_by_name(&mut self, username: &str) -> Result<Option<User>, StoreError> {
        self.one_user(
            "SELECT id, username, admin FROM users WHERE username = $1",
            username,
        )
    }

    fn user_by_id(&mut self, id: &str) -> Result<Option<User>, StoreError> {
        self.one_user("SELECT id, username, admin FROM users WHERE id = $1", id)
    }

    fn users(&mut self) -> Result<Vec<User>, StoreError> {
        self.s
            .query(
                "SELECT id, username, admin FROM users ORDER BY username",
                &[],
            )?
            .iter()
            .map(user_row)
            .collect()
    }

    fn insert_user(&mut self, user: &User) -> Result<(), StoreError> {
        self.s.execute(
            "INSERT INTO users (id, username, admin) VALUES ($1, $2, $3)",
            &[&user.id, &user.username, &user.admin],
        )?;
        Ok(())
    }

    fn org_by_name(&mut self, name: &str) -> Result<Option<Org>, StoreError> {
        self.s
            .query_opt("SELECT id, name FROM orgs WHERE name = $1", &[&name])?
            .map(|row| {
                Ok(Org {
                    id: col(&row, 0)?,
                    name: col(&row, 1)?,
                })
            })
            .transpose()
    }

    fn insert_org(&mut self, org: &Org) -> Result<(), StoreError> {
        self.s.execute(
            "INSERT INTO orgs (id, name) VALUES ($1, $2)",
            &[&org.id, &org.name],
        )?;
        Ok(())
    }

    fn add_org_member(&mut self, org_id: &str, user_id: &str) -> Result<(), StoreError> {
        self.s.execute(
            "INSERT INTO org_members (org_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&org_id, &user_id],
        )?;
        Ok(())
    }

    fn is_org_member(&mut self, org_id: &str, user_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .s
            .query_opt(
                "SELECT 1 FROM org_members WHERE org_id = $1 AND user_id = $2",
                &[&org_id, &user_id],
            )?
            .is_some())
    }

    fn org_members(&mut self, org_id: &str) -> Result<Vec<String>, StoreError> {
        self.s
            .query(
                "SELECT users.username FROM org_members \
                 JOIN users ON users.id = org_members.user_id \
                 WHERE org_members.org_id = $1 ORDER BY users.username",
                &[&org_id],
            )?
            .iter()
            .map(|row| col(row, 0))
            .collect()
    }

    fn insert_token(&mut self, token: &Token) -> Result<(), StoreError> {
        self.s.execute(
            "INSERT INTO tokens (id, hash, user_id, created, expires) VALUES ($1, $2, $3, $4, $5)",
            &[
                &token.id,
                &token.hash,
                &token.user_id,
                &token.created,
                &token.expires,
            ],
        )?;
        Ok(())
    }

    fn token_by_hash(&mut self, hash: &str) -> Result<Option<Token>, StoreError> {
        self.s
            .query_opt(
                "SELECT id, hash, user_id, created, expires FROM tokens WHERE hash = $1",
                &[&hash],
            )?
            .map(|row| token_row(&row))
            .transpose()
    }

    fn tokens(&mut self, user_id: Option<&str>) -> Result<Vec<Token>, StoreError> {
        self.s
            .query(
                "SELECT id, hash, user_id, created, expires FROM tokens \
                 WHERE $1::text IS NULL OR user_id = $1 ORDER BY created, id",
                &[&user_id],
            )?
            .iter()
            .map(token_row)
            .collect()
    }

    fn revoke_token(&mut self, id: &str) -> Result<Option<u64>, StoreError> {
        let Some(row) = self
            .s
            .query_opt("DELETE FROM tokens WHERE id = $1 RETURNING user_id", &[&id])?
        else {
            return Ok(None);
        };
        let user_id: String = col(&row, 0)?;
        self.withdraw_pending(
            "DELETE FROM pending WHERE user_id = $1 RETURNING uploads",
            &[&user_id],
        )
        .map(Some)
    }

    fn put_upload(&mut self, hash: &str, upload: &Upload) -> Result<(), StoreError> {
        let (state, size, sha256) = upload.state.columns()?;
        self.s.execute(
            "INSERT INTO uploads (hash, staging, destination, max_size, expires, state, size, sha256) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (hash) DO UPDATE SET staging = excluded.staging, \
             destination = excluded.destination, max_size = excluded.max_size, \
             expires = excluded.expires, state = excluded.state, size = excluded.size, \
             sha256 = excluded.sha256, receiver = NULL",
            &[
                &hash,
                &upload.staging,
                &upload.destination,
                &to_i64(upload.max_size, "upload limit")?,
                &upload.expires,
                &state,
                &size,
                &sha256,
            ],
        )?;
        Ok(())
    }

    fn end_receiving(
        &mut self,
        hash: &str,
        server: &str,
        outcome: &UploadState,
        now: i64,
    ) -> Result<bool, StoreError> {
        let (state, size, sha256) = outcome.columns()?;
        let changed = self.s.execute(
            "UPDATE uploads SET state = $2, size = $3, sha256 = $4, receiver = NULL \
             WHERE hash = $1 AND state = 'receiving' AND expires > $5 \
             AND receiver IS NOT DISTINCT FROM $6",
            &[&hash, &state, &size, &sha256, &now, &server],
        )?;
        Ok(changed > 0)
    }

    fn upload(&mut self, hash: &str) -> Result<Option<Upload>, StoreError> {
        upload(self.s, hash)
    }

    fn delete_upload(&mut self, hash: &str) -> Result<(), StoreError> {
        self.s
            .execute("DELETE FROM uploads WHERE hash = $1", &[&hash])?;
        Ok(())
    }

    fn put_pending(&mut self, hash: &str, pending: &Pending) -> Result<(), StoreError> {
        self.s.execute(
            "INSERT INTO pending (hash, kind, subject, user_id, record, uploads, expires) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (hash) DO UPDATE SET kind = excluded.kind, \
             subject = excluded.subject, user_id = excluded.user_id, \
             record = excluded.record, uploads = excluded.uploads, expires = excluded.expires",
            &[
                &hash,
                &pending.kind.as_str(),
                &pending.subject,
                &pending.user_id,
                &pending.record,
                &pending.uploads.join(" "),
                &pending.expires,
            ],
        )?;
        Ok(())
    }

    fn pending(&mut self, hash: &str) -> Result<Option<Pending>, StoreError> {
        let Some(row) = self.s.query_opt(
            "SELECT kind, subject, user_id, record, uploads, expires FROM pending WHERE hash = $1",
            &[&hash],
        )?
        else {
            return Ok(None);
        };
        let kind: String = col(&row, 0)?;
        let uploads: String = col(&row, 4)?;
        Ok(Some(Pending {
            kind: PendingKind::parse(&kind)?,
            subject: col(&row, 1)?,
            user_id: col(&row, 2)?,
            record: col(&row, 3)?,
            uploads: uploads.split_whitespace().map(str::to_owned).collect(),
            expires: col(&row, 5)?,
        }))
    }

    fn pending_for(&mut self, kind: PendingKind, subject: &str) -> Result<Vec<String>, StoreError> {
        self.s
            .query(
                "SELECT hash FROM pending WHERE kind = $1 AND subject = $2",
                &[&kind.as_str(), &subject],
            )?
            .iter()
            .map(|row| col(row, 0))
            .collect()
    }

    fn open_pending_of(&mut self, user_id: &str, now: i64) -> Result<u64, StoreError> {
        let row = self.s.query_one(
            "SELECT count(*) FROM pending WHERE user_id = $1 AND expires > $2",
            &[&user_id, &now],
        )?;
        to_u64(col(&row, 0)?, "open publishes")
    }

    fn delete_pending(&mut self, hash: &str) -> Result<(), StoreError> {
        self.s
            .execute("DELETE FROM pending WHERE hash = $1", &[&hash])?;
        Ok(())
    }

    fn retire_upload(&mut self, hash: &str) -> Result<(), StoreError> {
        self.s
            .execute("UPDATE uploads SET expires = 0 WHERE hash = $1", &[&hash])?;
        Ok(())
    }

    fn start_receiving(&mut self, hash: &str, server: &str) -> Result<(), StoreError> {
        self.s.execute(
            "UPDATE uploads SET state = 'receiving', receiver = $2 WHERE hash = $1",
            &[&hash, &server],
        )?;
        Ok(())
    }

    fn receiving_elsewhere(
        &mut self,
        server: &str,
        hash: &str,
        user_id: &str,
    ) -> Result<ReceivingElsewhere, StoreError> {
        let live = live_receiver("u.receiver");
        let row = self.s.query_one(
            &format!(
                "SELECT coalesce(bool_or(u.hash = $2), false), count(*) FROM uploads u \
                 WHERE u.state = 'receiving' AND u.receiver <> $1 AND {live} \
                 AND (u.hash = $2 OR EXISTS (SELECT 1 FROM pending p WHERE p.user_id = $3 \
                 AND strpos(' ' || p.uploads || ' ', ' ' || u.hash || ' ') > 0))"
            ),
            &[&server, &hash, &user_id],
        )?;
        let ticket: bool = col(&row, 0)?;
        let receiving: i64 = col(&row, 1)?;
        // The ticket itself counts as the user's: a PUT asks only about a ticket of one of
        // the user's pending publishes.
        Ok(ReceivingElsewhere {
            ticket,
            by_user: to_u64(receiving, "receiving uploads")?,
        })
    }

    fn reopen_abandoned_uploads(&mut self) -> Result<u64, StoreError> {
        let live = live_receiver("receiver");
        self.s.execute(
            &format!(
                "UPDATE uploads SET state = 'open', receiver = NULL \
                 WHERE state = 'receiving' AND (receiver IS NULL OR NOT {live})"
            ),
            &[],
        )
    }

    fn reopen_unheld_uploads(&mut self, server: &str, held: &[String]) -> Result<u64, StoreError> {
        self.s.execute(
            "UPDATE uploads SET state = 'open', receiver = NULL \
             WHERE state = 'receiving' AND receiver = $1 AND hash <> ALL($2)",
            &[&server, &held],
        )
    }

    fn expired_uploads(
        &mut self,
        now: i64,
        limit: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.s
            .query(
                "SELECT hash, staging FROM uploads WHERE expires < $1 ORDER BY expires LIMIT $2",
                &[&now, &limit],
            )?
            .iter()
            .map(|row| Ok((col(row, 0)?, col(row, 1)?)))
            .collect()
    }

    fn delete_expired_pending(&mut self, now: i64) -> Result<(), StoreError> {
        self.withdraw_pending(
            "DELETE FROM pending WHERE expires < $1 RETURNING uploads",
            &[&now],
        )
        .map(drop)
    }
}
