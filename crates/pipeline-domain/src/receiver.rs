//! The one account every payout goes to, how a transfer is checked against it, and how much a
//! credited invoice pays out.

use crate::taxid::TaxId;

/// The account every payout goes to. It comes from configuration only, never from a message:
/// nothing a webhook or a topic message says can redirect money.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receiver {
    /// Bank ISPB (Pix) or code.
    pub bank_code: String,
    /// Branch.
    pub branch_code: String,
    /// Account number.
    pub account_number: String,
    /// Holder name.
    pub name: String,
    /// Holder CPF/CNPJ, validated.
    pub tax_id: TaxId,
    /// `checking`, `savings`, `salary` or `payment`.
    pub account_type: String,
}

impl Default for Receiver {
    /// The project's fixed payout account: Stark Bank S.A.'s own payment account.
    fn default() -> Self {
        Self {
            bank_code: "20018183".into(),
            branch_code: "0001".into(),
            account_number: "6341320293482496".into(),
            name: "Stark Bank S.A.".into(),
            tax_id: TaxId::parse("20.018.183/0001-80")
                .expect("the default receiver's CNPJ is valid"),
            account_type: "payment".into(),
        }
    }
}

/// Which field of a [`Receiver`] is invalid, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ReceiverError {
    /// `bank_code`, `branch_code`, `account_number` or `account_type`.
    pub field: &'static str,
    /// What is wrong.
    pub reason: &'static str,
}

/// The account types Stark accepts for a transfer.
pub const ACCOUNT_TYPES: [&str; 4] = ["checking", "savings", "salary", "payment"];

impl Receiver {
    /// Checks the fields Stark would refuse, so that a bad configuration stops the service at
    /// start instead of dead-lettering every payout.
    pub fn validate(&self) -> Result<(), ReceiverError> {
        let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || c == '-');
        let fail = |field, reason| Err(ReceiverError { field, reason });
        if !digits(&self.bank_code) {
            return fail("bank_code", "must be digits");
        }
        if !digits(&self.branch_code) {
            return fail(
                "branch_code",
                "must be digits, optionally with a -check digit",
            );
        }
        if !digits(&self.account_number) {
            return fail(
                "account_number",
                "must be digits, optionally with a -check digit",
            );
        }
        if !ACCOUNT_TYPES.contains(&self.account_type.as_str()) {
            return fail(
                "account_type",
                "must be checking, savings, salary or payment",
            );
        }
        Ok(())
    }

    /// Whether `account` is this receiver (tax ids compared as ids, not as text).
    pub fn matches(&self, account: &Account) -> bool {
        account.bank_code == self.bank_code
            && account.branch_code == self.branch_code
            && account.account_number == self.account_number
            && TaxId::parse(account.tax_id.trim()).is_ok_and(|t| t == self.tax_id)
    }
}

/// What a credited invoice pays out, in cents: Stark's `amount − fee` of the invoice, less the
/// fee Stark charges for the transfer itself, never below 0.
///
/// The payout and its transfer fee together are exactly what Stark credited, so the pipeline
/// never spends money Stark did not credit to it: with a balance that starts at 0, paying
/// `amount − fee` and the transfer fee on top would leave the balance short by one transfer fee
/// per payout, and the last payouts could never be made. `amount` is Stark's current amount,
/// which a partial reversal lowers.
pub fn payout_due(amount: i64, invoice_fee: i64, transfer_fee: i64) -> i64 {
    amount
        .saturating_sub(invoice_fee)
        .saturating_sub(transfer_fee)
        .max(0)
}

/// Where a transfer went, as Stark reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Account {
    /// Bank code.
    pub bank_code: String,
    /// Branch.
    pub branch_code: String,
    /// Account number.
    pub account_number: String,
    /// Holder tax id, as Stark shows it.
    pub tax_id: String,
}

impl From<&Receiver> for Account {
    fn from(receiver: &Receiver) -> Self {
        Self {
            bank_code: receiver.bank_code.clone(),
            branch_code: receiver.branch_code.clone(),
            account_number: receiver.account_number.clone(),
            tax_id: receiver.tax_id.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_receiver_is_valid_and_matches_itself_in_any_tax_id_spelling() {
        let receiver = Receiver::default();
        assert_eq!(receiver.validate(), Ok(()));
        let mut account = Account::from(&receiver);
        assert!(receiver.matches(&account));
        account.tax_id = "20018183000180".into();
        assert!(receiver.matches(&account));
        account.account_number = "1".into();
        assert!(!receiver.matches(&account));
    }

    #[test]
    fn the_payout_and_its_fee_are_what_was_credited() {
        assert_eq!(payout_due(10_000, 50, 0), 9_950);
        assert_eq!(payout_due(10_000, 50, 50), 9_900);
        assert_eq!(payout_due(90, 50, 50), 0, "never negative");
        assert_eq!(payout_due(0, 50, 50), 0, "fully reversed");
    }

    #[test]
    fn invalid_fields_are_named() {
        let mut receiver = Receiver {
            account_type: "gold".into(),
            ..Receiver::default()
        };
        assert_eq!(receiver.validate().unwrap_err().field, "account_type");
        receiver.bank_code = "abc".into();
        assert_eq!(receiver.validate().unwrap_err().field, "bank_code");
    }
}
