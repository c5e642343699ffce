//! Dialogs and their members: create (one private dialog per pair), read, the dialog list
//! with the search operators (custom parameters in the `data` JSON column), occupant changes,
//! "delete for me", delete for everyone, notification settings, unread counts.

use sqlx::Row;

use super::{
    compare, dialog_from_row, encode_map, encode_users, membership, object_id, Binds,
    DIALOG_COLUMNS,
};
use crate::chat::model::{Dialog, DialogId, DialogType, DialogView};
use crate::chat::query::{Condition, DialogField, DialogQuery, Op, Value};
use crate::model::{AppId, UserId};
use crate::store::{Backend, Store, StoreResult};

impl Store {
    /// Inserts a dialog with its occupants. A second private dialog for the same pair is a
    /// `Conflict("pair")`; the caller then reads the existing one.
    pub async fn create_dialog(&self, dialog: &Dialog) -> StoreResult<()> {
        let mut tx = self.pool().begin().await?;
        let pair = (dialog.kind == DialogType::Private && dialog.occupants.len() == 2)
            .then(|| Dialog::pair_key(dialog.occupants[0], dialog.occupants[1]));
        sqlx::query(
            "INSERT INTO dialogs (id, app_id, type, user_id, name, photo, is_join_required, data, \
             pair, occupants, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(dialog.id.as_str().to_string())
        .bind(dialog.app.0)
        .bind(dialog.kind.code())
        .bind(dialog.owner.0)
        .bind(dialog.name.clone())
        .bind(dialog.photo.clone())
        .bind(i64::from(dialog.is_join_required))
        .bind(encode_map(dialog.data.as_ref()))
        .bind(pair)
        .bind(encode_users(&dialog.occupants))
        .bind(dialog.created_at)
        .bind(dialog.updated_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| crate::store::conflict_or(e, &[("pair", "pair"), ("id", "_id")]))?;
        for user in &dialog.occupants {
            sqlx::query("INSERT INTO dialog_members (dialog_id, user_id) VALUES ($1, $2)")
                .bind(dialog.id.as_str().to_string())
                .bind(user.0)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn dialog(&self, app: AppId, id: &DialogId) -> StoreResult<Option<Dialog>> {
        let sql =
            format!("SELECT {DIALOG_COLUMNS} FROM dialogs d WHERE d.id = $1 AND d.app_id = $2");
        let row = sqlx::query(&sql)
            .bind(id.as_str().to_string())
            .bind(app.0)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(dialog_from_row).transpose()
    }

    /// The private dialog of two users, if there is one.
    pub async fn private_dialog(
        &self,
        app: AppId,
        a: UserId,
        b: UserId,
    ) -> StoreResult<Option<Dialog>> {
        let sql =
            format!("SELECT {DIALOG_COLUMNS} FROM dialogs d WHERE d.app_id = $1 AND d.pair = $2");
        let row = sqlx::query(&sql)
            .bind(app.0)
            .bind(Dialog::pair_key(a, b))
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(dialog_from_row).transpose()
    }

    /// `user`'s unread count in a dialog (0 when not a member).
    pub async fn unread_in(&self, dialog: &DialogId, user: UserId) -> StoreResult<i64> {
        let row =
            sqlx::query("SELECT unread FROM dialog_members WHERE dialog_id = $1 AND user_id = $2")
                .bind(dialog.as_str().to_string())
                .bind(user.0)
                .fetch_optional(self.pool())
                .await?;
        Ok(row
            .map(|r| r.try_get::<i64, _>(0))
            .transpose()?
            .unwrap_or(0)
            .max(0))
    }

    /// The dialogs `user` sees (occupant of, or public, and not hidden), filtered and paged,
    /// and how many match in all.
    pub async fn list_dialogs(
        &self,
        app: AppId,
        user: UserId,
        query: &DialogQuery,
    ) -> StoreResult<(Vec<DialogView>, u64)> {
        let mut binds = Binds::default();
        let app_bind = binds.push(Value::Int(app.0));
        let user_bind = binds.push(Value::Int(user.0));
        let mut conditions = vec![
            format!("d.app_id = {app_bind}"),
            format!("(d.type = 1 OR k.occupant = 1)"),
            "COALESCE(k.hidden, 0) = 0".to_string(),
        ];
        for condition in &query.conditions {
            conditions.push(self.dialog_condition(condition, &mut binds));
        }
        let from = format!(
            "FROM dialogs d LEFT JOIN dialog_members k ON k.dialog_id = d.id AND k.user_id = {user_bind} \
             WHERE {}",
            conditions.join(" AND ")
        );
        let count_sql = format!("SELECT COUNT(*) {from}");
        let total: i64 = binds
            .apply(sqlx::query(&count_sql))
            .fetch_one(self.pool())
            .await?
            .try_get(0)?;
        if query.page.count {
            return Ok((Vec::new(), total.max(0) as u64));
        }
        let order = match &query.page.sort {
            Some((field, desc)) => {
                let direction = if *desc { "DESC" } else { "ASC" };
                let column = match field {
                    DialogField::Id => "d.id",
                    DialogField::Type => "d.type",
                    DialogField::Name => "d.name",
                    DialogField::LastMessageDateSent => "d.last_message_date_sent",
                    DialogField::UpdatedAt => "d.updated_at",
                    _ => "d.created_at",
                };
                // NULLs (no message yet) last either way, on both backends.
                format!("CASE WHEN {column} IS NULL THEN 1 ELSE 0 END, {column} {direction}, d.id {direction}")
            }
            None => "COALESCE(d.last_message_date_sent, d.created_at) DESC, d.id DESC".into(),
        };
        let page_sql = format!(
            "SELECT {DIALOG_COLUMNS}, COALESCE(k.unread, 0) {from} ORDER BY {order} LIMIT {} OFFSET {}",
            query.page.limit, query.page.skip
        );
        let rows = binds
            .apply(sqlx::query(&page_sql))
            .fetch_all(self.pool())
            .await?;
        let views = rows
            .iter()
            .map(|row| {
                Ok(DialogView {
                    dialog: dialog_from_row(row)?,
                    unread: row.try_get::<i64, _>(15)?.max(0),
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((views, total.max(0) as u64))
    }

    fn dialog_condition(&self, condition: &Condition<DialogField>, binds: &mut Binds) -> String {
        let column = match &condition.field {
            DialogField::Id => "d.id",
            DialogField::Type => "d.type",
            DialogField::Name => "d.name",
            DialogField::LastMessageDateSent => "d.last_message_date_sent",
            DialogField::CreatedAt => "d.created_at",
            DialogField::UpdatedAt => "d.updated_at",
            DialogField::Occupants => {
                return membership(condition.op, &condition.values, binds, |list| {
                    format!(
                        "SELECT COUNT(*) FROM dialog_members o WHERE o.dialog_id = d.id \
                         AND o.occupant = 1 AND o.user_id IN ({list})"
                    )
                })
            }
            DialogField::Data(name) => {
                return self.custom_condition(name, condition.op, &condition.values, binds)
            }
        };
        compare(column, condition.op, &condition.values, binds)
    }

    /// A condition on a custom parameter in the `data` JSON column: numbers compare as numbers,
    /// anything else as text. The parameter name is bound, never spliced.
    fn custom_condition(&self, name: &str, op: Op, values: &[Value], binds: &mut Binds) -> String {
        let path = match self.backend() {
            Backend::Sqlite => binds.push(Value::Text(format!("$.\"{}\"", name.replace('"', "")))),
            Backend::Postgres => binds.push(Value::Text(name.to_string())),
        };
        let (text, number) = match self.backend() {
            Backend::Sqlite => (
                format!("CAST(json_extract(d.data, {path}) AS TEXT)"),
                format!("CAST(json_extract(d.data, {path}) AS REAL)"),
            ),
            Backend::Postgres => (
                format!("(d.data::jsonb ->> {path})"),
                format!(
                    "(CASE WHEN (d.data::jsonb ->> {path}) ~ '^\\s*-?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?\\s*$' \
                     THEN (d.data::jsonb ->> {path})::double precision END)"
                ),
            ),
        };
        let exists = format!("{text} IS NOT NULL");
        let one = |value: &Value, op: Op, binds: &mut Binds| {
            let expr = if matches!(value, Value::Real(_)) {
                &number
            } else {
                &text
            };
            compare(expr, op, std::slice::from_ref(value), binds)
        };
        match op {
            Op::In => {
                let any: Vec<String> = values.iter().map(|v| one(v, Op::Eq, binds)).collect();
                format!("({})", any.join(" OR "))
            }
            Op::Nin => {
                let any: Vec<String> = values.iter().map(|v| one(v, Op::Eq, binds)).collect();
                format!("({exists} AND NOT ({}))", any.join(" OR "))
            }
            Op::All => {
                let all: Vec<String> = values.iter().map(|v| one(v, Op::Eq, binds)).collect();
                format!("({})", all.join(" AND "))
            }
            Op::Ne => format!("({exists} AND NOT ({}))", one(&values[0], Op::Eq, binds)),
            op => one(&values[0], op, binds),
        }
    }

    /// Writes a dialog's mutable fields and its occupant changes in one transaction.
    pub async fn update_dialog(
        &self,
        dialog: &Dialog,
        added: &[UserId],
        removed: &[UserId],
    ) -> StoreResult<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "UPDATE dialogs SET name = $1, photo = $2, data = $3, occupants = $4, updated_at = $5, \
             is_join_required = $6 WHERE id = $7",
        )
        .bind(dialog.name.clone())
        .bind(dialog.photo.clone())
        .bind(encode_map(dialog.data.as_ref()))
        .bind(encode_users(&dialog.occupants))
        .bind(dialog.updated_at)
        .bind(i64::from(dialog.is_join_required))
        .bind(dialog.id.as_str().to_string())
        .execute(&mut *tx)
        .await?;
        let id = dialog.id.as_str().to_string();
        for user in added {
            sqlx::query(
                "INSERT INTO dialog_members (dialog_id, user_id, occupant, hidden) \
                 VALUES ($1, $2, 1, 0) \
                 ON CONFLICT (dialog_id, user_id) DO UPDATE SET occupant = 1, hidden = 0",
            )
            .bind(id.clone())
            .bind(user.0)
            .execute(&mut *tx)
            .await?;
        }
        for user in removed {
            sqlx::query(
                "UPDATE dialog_members SET occupant = 0, unread = 0 \
                 WHERE dialog_id = $1 AND user_id = $2",
            )
            .bind(id.clone())
            .bind(user.0)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// "Delete for me" of a dialog the user stays in (private, public): hidden from their list
    /// until the next message.
    pub async fn hide_dialog(&self, dialog: &DialogId, user: UserId) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO dialog_members (dialog_id, user_id, occupant, hidden) VALUES ($1, $2, 0, 1) \
             ON CONFLICT (dialog_id, user_id) DO UPDATE SET hidden = 1, unread = 0",
        )
        .bind(dialog.as_str().to_string())
        .bind(user.0)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Deletes a dialog with its history and every mark.
    pub async fn delete_dialog(&self, dialog: &DialogId) -> StoreResult<()> {
        let id = dialog.as_str().to_string();
        let mut tx = self.pool().begin().await?;
        for sql in [
            "DELETE FROM message_marks WHERE dialog_id = $1",
            "DELETE FROM messages WHERE dialog_id = $1",
            "DELETE FROM dialog_members WHERE dialog_id = $1",
            "DELETE FROM dialogs WHERE id = $1",
        ] {
            sqlx::query(sql).bind(id.clone()).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Whether `user` gets offline alerts for the dialog (default yes).
    pub async fn dialog_notifications(&self, dialog: &DialogId, user: UserId) -> StoreResult<bool> {
        let row = sqlx::query(
            "SELECT notifications FROM dialog_members WHERE dialog_id = $1 AND user_id = $2",
        )
        .bind(dialog.as_str().to_string())
        .bind(user.0)
        .fetch_optional(self.pool())
        .await?;
        Ok(row
            .map(|r| r.try_get::<i64, _>(0))
            .transpose()?
            .unwrap_or(1)
            != 0)
    }

    pub async fn set_dialog_notifications(
        &self,
        dialog: &DialogId,
        user: UserId,
        enabled: bool,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO dialog_members (dialog_id, user_id, occupant, notifications) \
             VALUES ($1, $2, 0, $3) \
             ON CONFLICT (dialog_id, user_id) DO UPDATE SET notifications = $3",
        )
        .bind(dialog.as_str().to_string())
        .bind(user.0)
        .bind(i64::from(enabled))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Unread counts of `user`: per dialog (all of theirs, or the ones named) and the total.
    pub async fn unread_counts(
        &self,
        app: AppId,
        user: UserId,
        dialogs: Option<&[DialogId]>,
    ) -> StoreResult<Vec<(DialogId, i64)>> {
        let mut binds = Binds::default();
        let app_bind = binds.push(Value::Int(app.0));
        let user_bind = binds.push(Value::Int(user.0));
        let mut sql = format!(
            "SELECT k.dialog_id, k.unread FROM dialog_members k JOIN dialogs d ON d.id = k.dialog_id \
             WHERE d.app_id = {app_bind} AND k.user_id = {user_bind} AND k.occupant = 1"
        );
        if let Some(ids) = dialogs {
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let list: Vec<String> = ids
                .iter()
                .map(|id| binds.push(Value::Text(id.as_str().to_string())))
                .collect();
            sql.push_str(&format!(" AND k.dialog_id IN ({})", list.join(", ")));
        }
        let rows = binds
            .apply(sqlx::query(&sql))
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get(0)?;
                Ok((object_id(&id)?, row.try_get::<i64, _>(1)?.max(0)))
            })
            .collect()
    }

    /// The private dialogs `user` is in (their 1:1 archive).
    pub async fn private_dialogs_of(&self, app: AppId, user: UserId) -> StoreResult<Vec<DialogId>> {
        let rows = sqlx::query(
            "SELECT d.id FROM dialogs d JOIN dialog_members k ON k.dialog_id = d.id \
             WHERE d.app_id = $1 AND d.type = 3 AND k.user_id = $2 AND k.occupant = 1",
        )
        .bind(app.0)
        .bind(user.0)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| object_id(&row.try_get::<String, _>(0)?))
            .collect()
    }

    /// Which of `users` exist in `app`.
    pub async fn existing_users(&self, app: AppId, users: &[UserId]) -> StoreResult<Vec<UserId>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut binds = Binds::default();
        let app_bind = binds.push(Value::Int(app.0));
        let list: Vec<String> = users.iter().map(|u| binds.push(Value::Int(u.0))).collect();
        let sql = format!(
            "SELECT id FROM users WHERE app_id = {app_bind} AND id IN ({})",
            list.join(", ")
        );
        let rows = binds
            .apply(sqlx::query(&sql))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|r| Ok(UserId(r.try_get(0)?))).collect()
    }
}
