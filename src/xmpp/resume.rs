//! What happens to a session when its connection ends (XEP-0198 §5): a resumable one is
//! detached and waits `xmpp.sm_resume_timeout_s` for a new connection to take it over,
//! queueing what arrives meanwhile; anything else ends at once.

use std::time::Duration;

use tokio::sync::mpsc;
use xmpp_proto::sm::SmState;
use xmpp_proto::FullJid;

use super::conn::Connection;
use super::hub::{Delivery, Takeover, TakeoverRequest};
use super::session::Session;

impl Connection {
    pub(super) async fn resume(&mut self, previd: &str) -> Option<(FullJid, SmState)> {
        let owner = self.authenticated_bare()?;
        let Some(Takeover {
            jid,
            sm,
            handle,
            rx,
        }) = self.ctx.hub.take_over(previd, &owner).await
        else {
            self.ctx
                .metrics
                .sm_resumptions
                .with_label_values(&["failed"])
                .inc();
            return None;
        };
        let (app, user) = self.app?;
        self.ctx
            .metrics
            .sm_resumptions
            .with_label_values(&["resumed"])
            .inc();
        self.rx = Some(rx);
        self.sm_id = Some(previd.to_string());
        // A flush of stored messages cut short by the broken connection goes on: a resumed
        // client sends no new initial presence to start one.
        let flushing = handle
            .shared
            .priority()
            .is_some_and(|priority| priority >= 0);
        let mut session = Session::new(self.ctx.clone(), app, user, handle);
        session.offline_backlog = flushing;
        self.session = Some(session);
        Some((jid, sm))
    }

    /// After the stream ends: keep a resumable session for a while, else end it.
    pub(super) async fn finish(&mut self) {
        self.io.close().await;
        // Saves still in flight are routed before the session ends or waits for resumption
        // (their recipients should not wait for this client to come back).
        if let Some(session) = &mut self.session {
            for (text, urgency) in Box::pin(session.drain_saves()).await {
                self.core.deliver(&text, urgency);
            }
        }
        let Some(session) = self.session.take() else {
            return;
        };
        // Held back by CSI: never written, so after the unacknowledged ones in order.
        let held = self.core.take_held();
        let sm = self.core.take_sm();
        let rx = self.rx.take();
        match (sm, rx, self.sm_id.take()) {
            (Some(mut sm), Some(rx), Some(id))
                if sm.resumable() && !self.ctx.shutdown.is_cancelled() =>
            {
                let mut overflow = Vec::new();
                for stanza in held {
                    if sm.sent(&stanza).is_err() {
                        overflow.push(stanza);
                    }
                }
                if overflow.is_empty() {
                    self.detach(session, sm, rx, id).await;
                } else {
                    // Too many to keep for resumption: end now, storing what can be stored.
                    let mut unacked = sm.into_unacked();
                    unacked.extend(overflow);
                    session.end(unacked, Some(rx)).await;
                }
            }
            (sm, rx, _) => {
                let mut unacked = sm.map(SmState::into_unacked).unwrap_or_default();
                unacked.extend(held);
                session.end(unacked, rx).await;
            }
        }
    }

    /// Waits for a resumption (XEP-0198 §5) while queueing what arrives for the session.
    async fn detach(
        &mut self,
        session: Session,
        mut sm: SmState,
        mut rx: mpsc::Receiver<Delivery>,
        id: String,
    ) {
        let owner = session.handle().shared.jid.bare().clone();
        let (takeover_tx, mut takeover_rx) = mpsc::channel::<TakeoverRequest>(1);
        self.ctx.hub.detach(id.clone(), owner, takeover_tx);
        let timeout = tokio::time::sleep(Duration::from_secs(
            self.ctx.config.xmpp.sm_resume_timeout_s,
        ));
        tokio::pin!(timeout);
        tracing::debug!("session detached, waiting for resumption");
        // A stanza the resumption queue had no room for: it ends the wait, and is stored
        // with the unacknowledged ones rather than lost.
        let mut overflow: Option<Vec<u8>> = None;
        loop {
            tokio::select! {
                request = takeover_rx.recv() => {
                    let Some(reply) = request else { break };
                    self.ctx.hub.forget_detached(&id);
                    let handle = session.handle().clone();
                    let takeover = Takeover { jid: handle.shared.jid.clone(), sm, handle, rx };
                    let _ = reply.send(takeover);
                    return;
                }
                delivery = rx.recv() => match delivery {
                    Some(Delivery::Stanza(queued)) => {
                        let text = queued.stanza.as_bytes();
                        if sm.sent(text).is_err() {
                            overflow = Some(text.to_vec());
                            break;
                        }
                    }
                    Some(Delivery::Close(_)) | None => break,
                },
                _ = &mut timeout => break,
                _ = self.ctx.shutdown.cancelled() => break,
            }
        }
        self.ctx.hub.forget_detached(&id);
        let mut unacked = sm.into_unacked();
        unacked.extend(overflow);
        session.end(unacked, Some(rx)).await;
    }
}
