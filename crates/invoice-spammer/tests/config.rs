//! Configuration from the environment: defaults, and errors that name the variable.

use invoice_spammer::SpammerConfig;
use invoice_spammer::config::{DEFAULT_AMOUNT_MAX_CENTS, DEFAULT_AMOUNT_MIN_CENTS};
use pipeline_service::config::Env;
use time::macros::datetime;

const REQUIRED: [(&str, &str); 2] = [
    ("CAMPAIGN_ID", "demo-2025"),
    ("CAMPAIGN_START", "2025-03-01T09:00:00-03:00"),
];

fn with(extra: &[(&'static str, &'static str)]) -> Result<SpammerConfig, String> {
    let mut pairs: Vec<(&str, &str)> = REQUIRED.to_vec();
    for (name, value) in extra {
        pairs.retain(|(n, _)| n != name);
        pairs.push((name, value));
    }
    SpammerConfig::from_env(&Env::from_pairs(pairs)).map_err(|e| {
        assert!(e.to_string().contains(&e.variable), "{e}");
        e.variable
    })
}

#[test]
fn defaults_with_only_the_required_variables() {
    let config = with(&[]).unwrap();
    assert_eq!(config.campaign, "demo-2025");
    assert_eq!(config.start, datetime!(2025-03-01 12:00 UTC));
    assert_eq!(config.hours, 24);
    assert_eq!(
        config.amount_cents,
        DEFAULT_AMOUNT_MIN_CENTS..=DEFAULT_AMOUNT_MAX_CENTS
    );
    assert_eq!(config.due_after_hours, None);
    assert_eq!(config.expiration_seconds, None);
    assert_eq!(config.publish_concurrency, 4);
}

#[test]
fn every_variable_is_read() {
    let config = with(&[
        ("CAMPAIGN_HOURS", "6"),
        ("INVOICE_AMOUNT_MIN_CENTS", "1"),
        ("INVOICE_AMOUNT_MAX_CENTS", "1"),
        ("INVOICE_DUE_HOURS", "48"),
        ("INVOICE_EXPIRATION_SECONDS", "3600"),
        ("PUBLISH_CONCURRENCY", "12"),
    ])
    .unwrap();
    assert_eq!(config.hours, 6);
    assert_eq!(config.amount_cents, 1..=1);
    assert_eq!(config.due_after_hours, Some(48));
    assert_eq!(config.expiration_seconds, Some(3600));
    assert_eq!(config.publish_concurrency, 12);
}

#[test]
fn errors_name_the_variable() {
    let env = Env::from_pairs([("CAMPAIGN_START", "2025-03-01T12:00:00Z")]);
    let error = SpammerConfig::from_env(&env).unwrap_err();
    assert_eq!(error.variable, "CAMPAIGN_ID");
    assert!(error.to_string().contains("CAMPAIGN_ID"), "{error}");

    let env = Env::from_pairs([("CAMPAIGN_ID", "demo")]);
    assert_eq!(
        SpammerConfig::from_env(&env).unwrap_err().variable,
        "CAMPAIGN_START"
    );

    let cases: &[(&str, &str, &str)] = &[
        ("CAMPAIGN_ID", "Black Friday", "CAMPAIGN_ID"),
        ("CAMPAIGN_ID", "UPPER", "CAMPAIGN_ID"),
        ("CAMPAIGN_ID", "a:b", "CAMPAIGN_ID"),
        ("CAMPAIGN_ID", "a,b", "CAMPAIGN_ID"),
        ("CAMPAIGN_ID", "-demo", "CAMPAIGN_ID"),
        (
            "CAMPAIGN_ID",
            "a-very-long-campaign-name-that-goes-on-and-on-forever",
            "CAMPAIGN_ID",
        ),
        ("CAMPAIGN_START", "tomorrow", "CAMPAIGN_START"),
        ("CAMPAIGN_START", "2025-03-01 12:00", "CAMPAIGN_START"),
        ("CAMPAIGN_HOURS", "0", "CAMPAIGN_HOURS"),
        ("CAMPAIGN_HOURS", "-1", "CAMPAIGN_HOURS"),
        ("CAMPAIGN_HOURS", "twenty", "CAMPAIGN_HOURS"),
        ("CAMPAIGN_HOURS", "100000", "CAMPAIGN_HOURS"),
        ("INVOICE_AMOUNT_MIN_CENTS", "0", "INVOICE_AMOUNT_MIN_CENTS"),
        ("INVOICE_AMOUNT_MIN_CENTS", "-5", "INVOICE_AMOUNT_MIN_CENTS"),
        // Money is integer cents, never floats.
        (
            "INVOICE_AMOUNT_MIN_CENTS",
            "10.50",
            "INVOICE_AMOUNT_MIN_CENTS",
        ),
        (
            "INVOICE_AMOUNT_MAX_CENTS",
            "999",
            "INVOICE_AMOUNT_MAX_CENTS",
        ),
        (
            "INVOICE_AMOUNT_MAX_CENTS",
            "lots",
            "INVOICE_AMOUNT_MAX_CENTS",
        ),
        ("INVOICE_DUE_HOURS", "0", "INVOICE_DUE_HOURS"),
        ("INVOICE_DUE_HOURS", "soon", "INVOICE_DUE_HOURS"),
        (
            "INVOICE_EXPIRATION_SECONDS",
            "0",
            "INVOICE_EXPIRATION_SECONDS",
        ),
        (
            "INVOICE_EXPIRATION_SECONDS",
            "-60",
            "INVOICE_EXPIRATION_SECONDS",
        ),
        ("PUBLISH_CONCURRENCY", "0", "PUBLISH_CONCURRENCY"),
        ("PUBLISH_CONCURRENCY", "1000", "PUBLISH_CONCURRENCY"),
    ];
    for (name, value, variable) in cases {
        assert_eq!(
            with(&[(name, value)]).as_ref().map(|_| ()),
            Err(&variable.to_string()),
            "{name}={value:?}"
        );
    }
}

#[test]
fn min_above_max_is_refused_naming_both() {
    let env = Env::from_pairs(REQUIRED.iter().copied().chain([
        ("INVOICE_AMOUNT_MIN_CENTS", "5000"),
        ("INVOICE_AMOUNT_MAX_CENTS", "4999"),
    ]));
    let error = SpammerConfig::from_env(&env).unwrap_err();
    assert_eq!(error.variable, "INVOICE_AMOUNT_MAX_CENTS");
    assert!(error.reason.contains("INVOICE_AMOUNT_MIN_CENTS"), "{error}");
}

#[test]
fn blank_optional_variables_mean_unset() {
    let config = with(&[("INVOICE_DUE_HOURS", "  "), ("CAMPAIGN_HOURS", "")]).unwrap();
    assert_eq!(config.due_after_hours, None);
    assert_eq!(config.hours, 24);
}

#[test]
fn rate_multiplier_defaults_to_one_and_is_bounded() {
    assert_eq!(with(&[]).unwrap().rate_multiplier, 1);
    assert_eq!(
        with(&[("INVOICE_RATE_MULTIPLIER", "")])
            .unwrap()
            .rate_multiplier,
        1,
        "blank means unset"
    );
    for (value, expected) in [("1", 1), ("100", 100), ("1000", 1000)] {
        assert_eq!(
            with(&[("INVOICE_RATE_MULTIPLIER", value)])
                .unwrap()
                .rate_multiplier,
            expected
        );
    }
    for value in ["0", "1001", "-1", "2.5", "lots"] {
        assert_eq!(
            with(&[("INVOICE_RATE_MULTIPLIER", value)]).map(|_| ()),
            Err("INVOICE_RATE_MULTIPLIER".to_string()),
            "{value:?}"
        );
    }
}
