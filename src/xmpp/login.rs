//! Logging in on a connection: SASL PLAIN with a password or a QuickBlox session token
//! (checked by [`Auth`](crate::auth::Auth), throttled per address), then resource binding
//! (RFC 6120 §7), where a newer session with the same full JID replaces the older one.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use xmpp_proto::errors::StanzaErrorCondition;
use xmpp_proto::sasl::SaslFailure;
use xmpp_proto::{BareJid, FullJid, QbNode};

use super::conn::Connection;
use super::hub::{SessionHandle, SessionShared};
use super::session::Session;
use crate::auth::{secrets, AuthError};
use crate::clock;
use crate::model::{AppId, UserId};
use crate::telemetry::Pii;

impl Connection {
    pub(super) async fn authenticate(
        &mut self,
        authcid: &str,
        secret: &str,
    ) -> Result<BareJid, SaslFailure> {
        let Ok(node) = QbNode::parse(authcid) else {
            self.ctx
                .metrics
                .auth
                .with_label_values(&["malformed"])
                .inc();
            return Err(SaslFailure::NotAuthorized);
        };
        let (app, user) = (AppId(node.app()), UserId(node.user()));
        let now = clock::unix_now();
        match self
            .ctx
            .auth
            .check_user_secret(app, user, secret, Some(self.peer.ip()), now)
            .await
        {
            Ok(_) => {
                self.ctx.metrics.auth.with_label_values(&["success"]).inc();
                self.app = Some((app, user));
                BareJid::new(Some(authcid), self.ctx.domain())
                    .map_err(|_| SaslFailure::NotAuthorized)
            }
            Err(AuthError::Throttled(_)) => {
                self.ctx
                    .metrics
                    .auth
                    .with_label_values(&["throttled"])
                    .inc();
                self.ctx
                    .metrics
                    .limits
                    .with_label_values(&["auth_failures"])
                    .inc();
                Err(SaslFailure::TemporaryAuthFailure)
            }
            Err(AuthError::Store(error)) => {
                tracing::error!(%error, "authentication lookup failed");
                Err(SaslFailure::TemporaryAuthFailure)
            }
            Err(AuthError::Busy) => {
                self.ctx.metrics.auth.with_label_values(&["busy"]).inc();
                Err(SaslFailure::TemporaryAuthFailure)
            }
            Err(_) => {
                self.ctx.metrics.auth.with_label_values(&["failure"]).inc();
                // Slow down password guessing on this connection.
                tokio::time::sleep(Duration::from_millis(200)).await;
                Err(SaslFailure::NotAuthorized)
            }
        }
    }

    pub(super) fn bind(
        &mut self,
        resource: Option<String>,
    ) -> Result<FullJid, StanzaErrorCondition> {
        let (Some((app, user)), Some(bare)) = (self.app, self.authenticated_bare()) else {
            return Err(StanzaErrorCondition::NotAllowed);
        };
        let resource = resource.unwrap_or_else(|| secrets::random_hex(6));
        let jid = bare
            .with_resource(&resource)
            .map_err(|_| StanzaErrorCondition::BadRequest)?;
        let (tx, rx) = mpsc::channel(self.ctx.config.xmpp.session_queue);
        let shared = Arc::new(SessionShared::with_budget(
            jid.clone(),
            self.ctx.hub.next_generation(),
            self.ctx.config.xmpp.session_queue_bytes,
            self.ctx.queue_budget.clone(),
        ));
        let handle = SessionHandle {
            tx,
            shared: shared.clone(),
        };
        if let Some(old) = self.ctx.hub.bind(handle.clone()) {
            // RFC 6120 §7.7.2.2: the newer session wins, the older one is told why it ends.
            old.shared.close_as_replaced(&old.tx);
        }
        tracing::debug!(jid = %Pii(&jid), "bound");
        self.rx = Some(rx);
        self.session = Some(Session::new(self.ctx.clone(), app, user, handle));
        Ok(jid)
    }

    pub(super) fn authenticated_bare(&self) -> Option<BareJid> {
        let (app, user) = self.app?;
        BareJid::new(Some(&format!("{}-{}", user.0, app.0)), self.ctx.domain()).ok()
    }
}
