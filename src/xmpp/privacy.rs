//! XEP-0016 privacy lists: names, get, set, delete, default and active. Lists are stored with
//! their items in the order set (the QuickBlox SDK reads every second item). The default list
//! is what the server enforces (see [`block_rules`](super::block_rules)); active lists are
//! accepted but, being per session, not applied.

use xmpp_proto::errors::StanzaErrorCondition;
use xmpp_proto::{escape_attr, Element, IqType};

use super::reply::Handled;
use super::session::Session;

pub(super) const NS_PRIVACY: &str = "jabber:iq:privacy";

impl Session {
    pub(super) async fn privacy(
        &mut self,
        iq: &Element,
        query: &Element,
        iq_type: IqType,
    ) -> Handled {
        let children: Vec<&Element> = query.children().collect();
        if iq_type == IqType::Get {
            return self.privacy_get(iq, &children).await;
        }
        let [child] = children.as_slice() else {
            return Err(StanzaErrorCondition::BadRequest.into());
        };
        let changed = self.privacy_set(child).await;
        // Dropped whatever the outcome: a write that failed late may still have landed.
        self.blocks_changed();
        changed?;
        Ok(self.result(iq, None, ""))
    }

    async fn privacy_set(&self, child: &Element) -> Result<(), super::reply::Failure> {
        let store = &self.ctx.store;
        let name = child.attr("name");
        match (child.name(), name) {
            ("list", Some(name)) => {
                let items: Vec<&Element> = child.children().collect();
                if items.is_empty() {
                    store.delete_privacy_list(self.user, name).await?;
                } else {
                    let mut serialized = String::new();
                    for item in items {
                        item.write_xml(Some(NS_PRIVACY), &mut serialized);
                    }
                    store.put_privacy_list(self.user, name, &serialized).await?;
                }
            }
            ("default", name) => {
                if let Some(name) = name {
                    if store.privacy_list(self.user, name).await?.is_none() {
                        return Err(StanzaErrorCondition::ItemNotFound.into());
                    }
                }
                store.set_default_privacy_list(self.user, name).await?;
            }
            ("active", name) => {
                // Active lists are per session; this server applies the default list.
                if let Some(name) = name {
                    if store.privacy_list(self.user, name).await?.is_none() {
                        return Err(StanzaErrorCondition::ItemNotFound.into());
                    }
                }
            }
            _ => return Err(StanzaErrorCondition::BadRequest.into()),
        }
        Ok(())
    }

    async fn privacy_get(&mut self, iq: &Element, children: &[&Element]) -> Handled {
        let store = &self.ctx.store;
        match children {
            [] => {
                let (names, default) = store.privacy_list_names(self.user).await?;
                let mut body = format!("<query xmlns='{NS_PRIVACY}'>");
                if let Some(default) = default {
                    body.push_str(&format!("<default name='{}'/>", escape_attr(&default)));
                }
                for name in names {
                    body.push_str(&format!("<list name='{}'/>", escape_attr(&name)));
                }
                body.push_str("</query>");
                Ok(self.result(iq, None, &body))
            }
            [list] if list.name() == "list" => {
                let name = list.attr("name").unwrap_or_default();
                let Some(items) = store.privacy_list(self.user, name).await? else {
                    return Err(StanzaErrorCondition::ItemNotFound.into());
                };
                let body = format!(
                    "<query xmlns='{NS_PRIVACY}'><list name='{}'>{items}</list></query>",
                    escape_attr(name)
                );
                Ok(self.result(iq, None, &body))
            }
            _ => Err(StanzaErrorCondition::BadRequest.into()),
        }
    }
}
