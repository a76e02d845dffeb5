//! The tag and key vocabulary: every string the pipeline writes to Stark Bank so that it can
//! find its own objects again.
//!
//! Exactly-once rests on these strings. The invoice sender finds an invoice by its request tag
//! before creating one; money-sender makes Stark refuse a second transfer through the payout
//! key (`externalId`); the audit, `reconcile` and `status` read both back. So they are
//! formatted and parsed here and nowhere else: changing one is one edit, and every reader
//! changes with it.
//!
//! | string | on | example |
//! |---|---|---|
//! | [`RequestTag`] | invoice | `request:demo-3-7` |
//! | [`CampaignTag`] | invoice | `campaign:demo` |
//! | [`SlotTag`] | invoice | `slot:3` |
//! | [`PayoutKey`] | transfer `externalId` and tag | `payout-5155165527080960`, `payout-5155165527080960-2` |
//! | [`InvoiceTag`] | transfer | `invoice:5155165527080960` |
//!
//! Stark lowercases tags, so every tag is written lowercase and compared lowercase.

use std::fmt;

const REQUEST: &str = "request:";
const CAMPAIGN: &str = "campaign:";
const SLOT: &str = "slot:";
const PAYOUT: &str = "payout-";
const INVOICE: &str = "invoice:";

/// The tag that ties an invoice to the request it was made from: `request:<request id>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestTag {
    request_id: String,
}

impl RequestTag {
    /// The tag of `request_id` (lowercased, as Stark stores tags).
    pub fn for_request(request_id: &str) -> Self {
        Self {
            request_id: request_id.to_lowercase(),
        }
    }

    /// Reads a tag; `None` when it is not a request tag.
    pub fn parse(tag: &str) -> Option<Self> {
        let id = tag.strip_prefix(REQUEST)?;
        (!id.is_empty()).then(|| Self::for_request(id))
    }

    /// The first request tag among `tags`.
    pub fn find<S: AsRef<str>>(tags: &[S]) -> Option<Self> {
        tags.iter().find_map(|t| Self::parse(t.as_ref()))
    }

    /// The request id, lowercase.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }
}

impl fmt::Display for RequestTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{REQUEST}{}", self.request_id)
    }
}

/// The tag of a campaign's invoices: `campaign:<campaign id>`, what `status` queries by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CampaignTag {
    campaign: String,
}

impl CampaignTag {
    /// The tag of `campaign` (lowercased).
    pub fn for_campaign(campaign: &str) -> Self {
        Self {
            campaign: campaign.to_lowercase(),
        }
    }

    /// Reads a tag; `None` when it is not a campaign tag.
    pub fn parse(tag: &str) -> Option<Self> {
        let campaign = tag.strip_prefix(CAMPAIGN)?;
        (!campaign.is_empty()).then(|| Self::for_campaign(campaign))
    }

    /// The campaign id.
    pub fn campaign(&self) -> &str {
        &self.campaign
    }
}

impl fmt::Display for CampaignTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{CAMPAIGN}{}", self.campaign)
    }
}

/// The tag of an invoice's hour slot within its campaign: `slot:<n>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlotTag(pub u32);

impl SlotTag {
    /// Reads a tag; `None` when it is not a slot tag or the number does not parse.
    pub fn parse(tag: &str) -> Option<Self> {
        tag.strip_prefix(SLOT)?.parse().ok().map(SlotTag)
    }

    /// The slot among `tags`.
    pub fn find<S: AsRef<str>>(tags: &[S]) -> Option<Self> {
        tags.iter().find_map(|t| Self::parse(t.as_ref()))
    }
}

impl fmt::Display for SlotTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SLOT}{}", self.0)
    }
}

/// Every tag an invoice request puts on its invoice, in this order: request, campaign, slot.
pub fn invoice_tags(request_id: &str, campaign: &str, slot: u32) -> Vec<String> {
    vec![
        RequestTag::for_request(request_id).to_string(),
        CampaignTag::for_campaign(campaign).to_string(),
        SlotTag(slot).to_string(),
    ]
}

/// Most payout generations of one invoice: the first transfer and two re-issues after
/// terminal failures. Bounded so that a receiver that always fails cannot drain the balance
/// in fees; after that an operator decides.
pub const MAX_PAYOUT_GENERATIONS: u32 = 3;

/// The `externalId` (and tag) of a payout transfer: `payout-<invoice id>` for the first
/// generation, `payout-<invoice id>-<n>` for the n-th.
///
/// Derived from the invoice id, never from an event id: Stark's `paid` and `credited` events of
/// one invoice (and their duplicates) have different ids, and all of them must collapse into one
/// payout. Stark refuses a repeated `externalId`, which is what makes a redelivery harmless; a
/// new generation is made only once every earlier one has terminally failed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PayoutKey {
    invoice_id: String,
    generation: u32,
}

impl PayoutKey {
    /// The first-generation key of `invoice_id`.
    pub fn for_invoice(invoice_id: &str) -> Self {
        Self {
            invoice_id: invoice_id.to_owned(),
            generation: 1,
        }
    }

    /// The key of generation `generation` (1-based) of `invoice_id`, if within bounds.
    pub fn generation_of(invoice_id: &str, generation: u32) -> Option<Self> {
        (1..=MAX_PAYOUT_GENERATIONS)
            .contains(&generation)
            .then(|| Self {
                invoice_id: invoice_id.to_owned(),
                generation,
            })
    }

    /// Reads an `externalId` or tag; `None` when it is not a payout key.
    pub fn parse(text: &str) -> Option<Self> {
        let rest = text.strip_prefix(PAYOUT)?;
        let (invoice_id, generation) = match rest.split_once('-') {
            None => (rest, 1),
            Some((id, generation)) => {
                let n: u32 = generation.parse().ok()?;
                // `payout-<id>-1` is never written: generation 1 has no suffix.
                if n < 2 || generation.starts_with('0') {
                    return None;
                }
                (id, n)
            }
        };
        if invoice_id.is_empty() || !invoice_id.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Self {
            invoice_id: invoice_id.to_owned(),
            generation,
        })
    }

    /// The invoice this payout is for.
    pub fn invoice_id(&self) -> &str {
        &self.invoice_id
    }

    /// 1 for the first transfer, 2 and up for re-issues.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// The key of the next generation, or `None` past [`MAX_PAYOUT_GENERATIONS`].
    pub fn next(&self) -> Option<Self> {
        Self::generation_of(&self.invoice_id, self.generation + 1)
    }
}

impl fmt::Display for PayoutKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.generation {
            1 => write!(f, "{PAYOUT}{}", self.invoice_id),
            n => write!(f, "{PAYOUT}{}-{n}", self.invoice_id),
        }
    }
}

/// The tag on a payout transfer naming its invoice: `invoice:<invoice id>`. Lets an operator
/// find every generation of one invoice's payout with one tag query.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InvoiceTag {
    invoice_id: String,
}

impl InvoiceTag {
    /// The tag of `invoice_id`.
    pub fn for_invoice(invoice_id: &str) -> Self {
        Self {
            invoice_id: invoice_id.to_owned(),
        }
    }

    /// Reads a tag; `None` when it is not an invoice tag.
    pub fn parse(tag: &str) -> Option<Self> {
        let id = tag.strip_prefix(INVOICE)?;
        (!id.is_empty()).then(|| Self::for_invoice(id))
    }

    /// The invoice id.
    pub fn invoice_id(&self) -> &str {
        &self.invoice_id
    }
}

impl fmt::Display for InvoiceTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{INVOICE}{}", self.invoice_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_tags_round_trip_lowercase() {
        let tag = RequestTag::for_request("Demo-3-7");
        assert_eq!(tag.to_string(), "request:demo-3-7");
        assert_eq!(RequestTag::parse(&tag.to_string()), Some(tag.clone()));
        assert_eq!(tag.request_id(), "demo-3-7");
        assert_eq!(RequestTag::parse("request:"), None);
        assert_eq!(RequestTag::parse("campaign:demo"), None);
        let tags = invoice_tags("demo-3-7", "Demo", 3);
        assert_eq!(tags, ["request:demo-3-7", "campaign:demo", "slot:3"]);
        assert_eq!(RequestTag::find(&tags), Some(tag));
        assert_eq!(SlotTag::find(&tags), Some(SlotTag(3)));
        assert_eq!(
            CampaignTag::parse(&tags[1]).map(|c| c.campaign().to_owned()),
            Some("demo".into())
        );
        assert_eq!(SlotTag::parse("slot:x"), None);
    }

    #[test]
    fn payout_keys_round_trip_with_generations() {
        let first = PayoutKey::for_invoice("5155165527080960");
        assert_eq!(first.to_string(), "payout-5155165527080960");
        assert_eq!(
            PayoutKey::parse("payout-5155165527080960"),
            Some(first.clone())
        );
        let second = first.next().unwrap();
        assert_eq!(second.to_string(), "payout-5155165527080960-2");
        assert_eq!(second.generation(), 2);
        assert_eq!(second.invoice_id(), "5155165527080960");
        assert_eq!(PayoutKey::parse(&second.to_string()), Some(second.clone()));
        let third = second.next().unwrap();
        assert_eq!(third.next(), None, "bounded at {MAX_PAYOUT_GENERATIONS}");
        assert_eq!(PayoutKey::generation_of("1", 0), None);
        for bad in [
            "payout-",
            "payout-12-1",
            "payout-12-02",
            "payout-12-x",
            "payout-ab",
            "payout-12-2-3",
            "request:12",
            "Payout-12",
        ] {
            assert_eq!(PayoutKey::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn invoice_tags_round_trip() {
        let tag = InvoiceTag::for_invoice("42");
        assert_eq!(tag.to_string(), "invoice:42");
        assert_eq!(InvoiceTag::parse("invoice:42"), Some(tag));
        assert_eq!(InvoiceTag::parse("invoice:"), None);
    }
}
