//! Webhook subscriptions: `/v2/webhook`.

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::client::Client;
use crate::error::Error;
use crate::page::check_id;

/// A webhook subscription: Stark POSTs events of `subscriptions` to `url`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    /// Id.
    pub id: String,
    /// HTTPS endpoint.
    pub url: String,
    /// Resource names, e.g. `invoice`, `transfer`.
    pub subscriptions: Vec<String>,
}

impl Client {
    /// `POST /v2/webhook`.
    pub async fn create_webhook(
        &self,
        url: &str,
        subscriptions: &[String],
    ) -> Result<Webhook, Error> {
        if subscriptions.is_empty() {
            return Err(Error::InvalidRequest(
                "a webhook needs at least one subscription".into(),
            ));
        }
        let body: OneWebhook = self
            .post(
                "webhook",
                &json!({ "url": url, "subscriptions": subscriptions }),
            )
            .await?;
        Ok(body.webhook)
    }

    /// `GET /v2/webhook`, every page.
    pub async fn list_webhooks(&self) -> Result<Vec<Webhook>, Error> {
        self.collect("webhook", "webhooks", &[], None).await
    }

    /// `GET /v2/webhook/{id}`.
    pub async fn get_webhook(&self, id: &str) -> Result<Webhook, Error> {
        check_id("webhook", id)?;
        let body: OneWebhook = self.get(&format!("webhook/{id}"), &[]).await?;
        Ok(body.webhook)
    }

    /// `DELETE /v2/webhook/{id}`.
    pub async fn delete_webhook(&self, id: &str) -> Result<Webhook, Error> {
        check_id("webhook", id)?;
        let body: OneWebhook = self.delete(&format!("webhook/{id}")).await?;
        Ok(body.webhook)
    }
}

#[derive(Deserialize)]
struct OneWebhook {
    webhook: Webhook,
}
