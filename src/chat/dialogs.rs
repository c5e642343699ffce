//! Dialogs and who may do what with them (seed 002 "Create dialog", "Update dialog", "Delete
//! dialog"):
//!
//! - Create: the creator is added to the occupants; a private dialog is one per pair (asking
//!   again returns the existing one); occupants must be users of the application.
//! - Update, group (type 2): any occupant may add users and rename; an occupant may remove
//!   only themselves; the owner may remove anyone. Public (type 1): only the owner. Private
//!   dialogs have fixed occupants.
//! - Delete: without `force`, "for me": a group occupant leaves; a private or public dialog is
//!   hidden until its next message. With `force=1`, the owner deletes it for everyone.
//! - Read (history, notifications): occupants, and anyone for a public dialog.

use serde_json::{Map, Value};

use super::model::{Dialog, DialogId, DialogType, ObjectId};
use super::{Chat, ChatError, ChatResult};
use crate::model::{AppId, UserId};

/// Most occupants a dialog may have; the rooms are for conversations, not broadcasts.
pub const MAX_OCCUPANTS: usize = 1000;

/// A `POST /chat/Dialog` request, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDialog {
    pub kind: DialogType,
    pub name: Option<String>,
    pub photo: Option<String>,
    /// Besides the creator, who is always added.
    pub occupants: Vec<UserId>,
    pub data: Option<Map<String, Value>>,
    pub is_join_required: bool,
}

/// A `PUT /chat/Dialog/{id}` request, parsed; `None` leaves a field as it is.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DialogUpdate {
    pub name: Option<String>,
    pub photo: Option<String>,
    pub data: Option<Map<String, Value>>,
    pub is_join_required: Option<bool>,
    pub push: Vec<UserId>,
    pub pull: Vec<UserId>,
}

/// What a multi-id delete did with each id (the SDK's multi-result shape).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteReport {
    pub deleted: Vec<DialogId>,
    pub forbidden: Vec<DialogId>,
    pub not_found: Vec<DialogId>,
}

impl Chat {
    /// Creates a dialog (or, for a private pair that has one, returns it: `false`).
    pub async fn create_dialog(
        &self,
        app: AppId,
        creator: UserId,
        new: NewDialog,
        now: i64,
    ) -> ChatResult<(Dialog, bool)> {
        let mut occupants = vec![creator];
        for user in new.occupants {
            if !occupants.contains(&user) {
                occupants.push(user);
            }
        }
        if occupants.len() > MAX_OCCUPANTS {
            return Err(ChatError::invalid(
                "occupants_ids",
                format!("must have at most {MAX_OCCUPANTS} users"),
            ));
        }
        self.check_users(app, &occupants[1..]).await?;
        let name = match new.kind {
            DialogType::Private => None,
            _ => match new.name.as_deref().map(str::trim) {
                Some(name) if !name.is_empty() => Some(name.to_string()),
                _ => return Err(ChatError::invalid("name", "can't be blank")),
            },
        };
        if new.kind == DialogType::Private {
            if occupants.len() != 2 {
                return Err(ChatError::invalid(
                    "occupants_ids",
                    "a private dialog has exactly one other occupant",
                ));
            }
            if let Some(existing) = self
                .store
                .private_dialog(app, occupants[0], occupants[1])
                .await?
            {
                return Ok((existing, false));
            }
        }
        let dialog = Dialog {
            id: ObjectId::generate(now),
            app,
            kind: new.kind,
            owner: creator,
            name,
            photo: if new.kind == DialogType::Private {
                None
            } else {
                new.photo
            },
            is_join_required: new.is_join_required,
            data: new.data,
            occupants,
            last_message: None,
            created_at: now,
            updated_at: now,
        };
        match self.store.create_dialog(&dialog).await {
            Ok(()) => Ok((dialog, true)),
            // Two first messages between the same pair raced: the other one won.
            Err(crate::store::StoreError::Conflict("pair")) => {
                let existing = self
                    .store
                    .private_dialog(app, dialog.occupants[0], dialog.occupants[1])
                    .await?
                    .ok_or_else(|| ChatError::NotFound("Dialog not found".into()))?;
                Ok((existing, false))
            }
            Err(error) => Err(error.into()),
        }
    }

    /// The private dialog of two users, created on first use (the first saved 1:1 message).
    pub async fn private_dialog(
        &self,
        app: AppId,
        sender: UserId,
        recipient: UserId,
        now: i64,
    ) -> ChatResult<Dialog> {
        if let Some(dialog) = self.store.private_dialog(app, sender, recipient).await? {
            return Ok(dialog);
        }
        let new = NewDialog {
            kind: DialogType::Private,
            name: None,
            photo: None,
            occupants: vec![recipient],
            data: None,
            is_join_required: false,
        };
        Ok(self.create_dialog(app, sender, new, now).await?.0)
    }

    /// A dialog `user` may read, or why not: 404 when there is none in this application, 403
    /// when it is not theirs.
    pub async fn readable_dialog(
        &self,
        app: AppId,
        user: UserId,
        id: &DialogId,
    ) -> ChatResult<Dialog> {
        let dialog = self.existing_dialog(app, id).await?;
        if dialog.may_read(user) {
            Ok(dialog)
        } else {
            Err(ChatError::forbidden())
        }
    }

    pub async fn existing_dialog(&self, app: AppId, id: &DialogId) -> ChatResult<Dialog> {
        self.store
            .dialog(app, id)
            .await?
            .ok_or_else(|| ChatError::NotFound(format!("Dialog {id} not found")))
    }

    /// Applies an update under the rules above; tells live rooms who left.
    pub async fn update_dialog(
        &self,
        app: AppId,
        caller: UserId,
        id: &DialogId,
        update: DialogUpdate,
        now: i64,
    ) -> ChatResult<Dialog> {
        let mut dialog = self.existing_dialog(app, id).await?;
        let is_owner = dialog.owner == caller;
        match dialog.kind {
            DialogType::PublicGroup if !is_owner => return Err(ChatError::forbidden()),
            DialogType::Group if !is_owner && !dialog.is_occupant(caller) => {
                return Err(ChatError::forbidden())
            }
            DialogType::Private => {
                if !dialog.is_occupant(caller) {
                    return Err(ChatError::forbidden());
                }
                if !update.push.is_empty() || !update.pull.is_empty() {
                    return Err(ChatError::invalid(
                        "occupants_ids",
                        "cannot be changed in a private dialog",
                    ));
                }
            }
            _ => {}
        }
        if !is_owner && update.pull.iter().any(|&user| user != caller) {
            return Err(ChatError::Forbidden(
                "Only the dialog's owner can remove other occupants".into(),
            ));
        }
        let added: Vec<UserId> = update
            .push
            .iter()
            .copied()
            .filter(|user| !dialog.is_occupant(*user) && !update.pull.contains(user))
            .collect();
        self.check_users(app, &added).await?;
        let removed: Vec<UserId> = update
            .pull
            .iter()
            .copied()
            .filter(|user| dialog.is_occupant(*user))
            .collect();
        if dialog.occupants.len() + added.len() > MAX_OCCUPANTS {
            return Err(ChatError::invalid(
                "occupants_ids",
                format!("must have at most {MAX_OCCUPANTS} users"),
            ));
        }
        if let Some(name) = update.name {
            if dialog.kind != DialogType::Private {
                let name = name.trim();
                if name.is_empty() {
                    return Err(ChatError::invalid("name", "can't be blank"));
                }
                dialog.name = Some(name.to_string());
            }
        }
        if let Some(photo) = update.photo {
            if dialog.kind != DialogType::Private {
                dialog.photo = (!photo.is_empty()).then_some(photo);
            }
        }
        if let Some(data) = update.data {
            let mut merged = dialog.data.take().unwrap_or_default();
            merged.extend(data);
            dialog.data = Some(merged);
        }
        if let Some(required) = update.is_join_required {
            dialog.is_join_required = required;
        }
        dialog.occupants.retain(|user| !removed.contains(user));
        dialog.occupants.extend(added.iter().copied());
        dialog.updated_at = now;
        self.store.update_dialog(&dialog, &added, &removed).await?;
        if let Some(realtime) = self.realtime() {
            realtime.dialog_changed(&dialog, &removed, caller);
        }
        Ok(dialog)
    }

    /// Deletes dialogs for `caller` (or for everyone with `force`), id by id.
    pub async fn delete_dialogs(
        &self,
        app: AppId,
        caller: UserId,
        ids: &[DialogId],
        force: bool,
        now: i64,
    ) -> ChatResult<DeleteReport> {
        let mut report = DeleteReport::default();
        for id in ids {
            let Some(mut dialog) = self.store.dialog(app, id).await? else {
                report.not_found.push(id.clone());
                continue;
            };
            let is_owner = dialog.owner == caller;
            if force {
                if !is_owner {
                    report.forbidden.push(id.clone());
                    continue;
                }
                self.store.delete_dialog(id).await?;
                self.forget_private(&dialog);
                if let Some(realtime) = self.realtime() {
                    realtime.dialog_deleted(app, id);
                }
                report.deleted.push(id.clone());
                continue;
            }
            match dialog.kind {
                DialogType::Group if dialog.is_occupant(caller) => {
                    dialog.occupants.retain(|user| *user != caller);
                    dialog.updated_at = now;
                    self.store.update_dialog(&dialog, &[], &[caller]).await?;
                    if let Some(realtime) = self.realtime() {
                        realtime.dialog_changed(&dialog, &[caller], caller);
                    }
                }
                DialogType::Private if dialog.is_occupant(caller) => {
                    self.store.hide_dialog(id, caller).await?;
                }
                DialogType::PublicGroup => self.store.hide_dialog(id, caller).await?,
                _ => {
                    report.forbidden.push(id.clone());
                    continue;
                }
            }
            report.deleted.push(id.clone());
        }
        Ok(report)
    }

    /// Fails with a 422 naming the users that are not in the application.
    async fn check_users(&self, app: AppId, users: &[UserId]) -> ChatResult<()> {
        if users.is_empty() {
            return Ok(());
        }
        let known = self.store.existing_users(app, users).await?;
        let unknown: Vec<String> = users
            .iter()
            .filter(|user| !known.contains(user))
            .map(|user| user.0.to_string())
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(ChatError::invalid(
                "occupants_ids",
                format!("contains users that do not exist: {}", unknown.join(", ")),
            ))
        }
    }
}

/// Parses a list of user ids as the SDK sends it: `"7, 8"`, `"7,8"` (arrays arrive
/// comma-joined).
pub fn parse_user_ids(field: &str, raw: &str) -> ChatResult<Vec<UserId>> {
    raw.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.parse::<i64>()
                .ok()
                .filter(|id| *id > 0)
                .map(UserId)
                .ok_or_else(|| ChatError::invalid(field, format!("{item:?} is not a user id")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_id_lists() {
        assert_eq!(
            parse_user_ids("occupants_ids", "7, 8,9").unwrap(),
            vec![UserId(7), UserId(8), UserId(9)]
        );
        assert!(parse_user_ids("occupants_ids", "").unwrap().is_empty());
        assert!(parse_user_ids("occupants_ids", "7,x").is_err());
        assert!(parse_user_ids("occupants_ids", "-1").is_err());
    }
}
