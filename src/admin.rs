//! Operator actions shared by the CLI and tests: creating applications and users without a
//! session.

use serde::Serialize;

use crate::auth::secrets;
use crate::clock;
use crate::model::{AppId, User};
use crate::store::{Store, StoreError};

/// What `switchboard app create --json` prints (the operator contract in docs/architecture.md).
#[derive(Debug, Clone, Serialize)]
pub struct AppCredentials {
    pub application_id: i64,
    pub name: String,
    pub auth_key: String,
    pub auth_secret: String,
    pub account_key: String,
    /// Server-to-server key acting as the account owner (`Authorization: ApiKey …`); shown
    /// once, stored only as a hash.
    pub api_key: String,
}

/// Creates an application with fresh random credentials.
pub async fn create_app(store: &Store, name: &str) -> Result<AppCredentials, StoreError> {
    let auth_key = secrets::random_hex(12);
    let auth_secret = secrets::random_hex(16);
    let account_key = secrets::random_hex(10);
    let api_key = format!("sbk_{}", secrets::random_hex(24));
    let app = store
        .create_app(
            name,
            &auth_key,
            &auth_secret,
            &account_key,
            &secrets::credential_hash(&api_key),
            clock::unix_now(),
        )
        .await?;
    Ok(AppCredentials {
        application_id: app.id.0,
        name: app.name,
        auth_key,
        auth_secret,
        account_key,
        api_key,
    })
}

/// Creates a user directly in the store (the REST API's validation is for clients).
pub async fn create_user(
    store: &Store,
    app: AppId,
    login: &str,
    password: &str,
    email: Option<&str>,
    tags: &[String],
) -> Result<User, StoreError> {
    let now = clock::unix_now();
    let password = password.to_string();
    let password_hash = tokio::task::spawn_blocking(move || secrets::hash_password(&password))
        .await
        .expect("password hashing does not panic");
    let user = User {
        app_id: app,
        login: Some(login.to_string()),
        email: email.map(str::to_string),
        tags: tags.to_vec(),
        password_hash,
        created_at: now,
        updated_at: now,
        ..User::default()
    };
    store.create_user(&user).await
}
