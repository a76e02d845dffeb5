//! The workspace balance: `GET /v2/balance`.

use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::error::Error;

/// The balance of the workspace the client's credentials act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    /// Balance id.
    pub id: String,
    /// Integer cents: the sum of every transaction of the workspace. Credited invoices add
    /// `amount - fee`; transfers take `amount + fee`.
    pub amount: i64,
    /// ISO 4217 code, e.g. `BRL`.
    pub currency: String,
    /// When the balance last changed.
    pub updated: String,
}

impl Client {
    /// `GET /v2/balance`. Stark answers a list, `{"balances": [...]}`, of which the SDKs take
    /// the first entry; so do we. An empty list is an [`Error::UnknownOutcome`]: there is
    /// always a balance, so such an answer is not one we understand.
    pub async fn get_balance(&self) -> Result<Balance, Error> {
        #[derive(Deserialize)]
        struct Balances {
            balances: Vec<Balance>,
        }
        let body: Balances = self.get("balance", &[]).await?;
        body.balances
            .into_iter()
            .next()
            .ok_or_else(|| Error::UnknownOutcome {
                method: "GET".into(),
                url: "balance".into(),
                detail: "Stark listed no balance".into(),
            })
    }
}
