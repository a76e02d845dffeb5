//! The operator commands: keys, the Stark webhook, replay, reconcile, undelivered events,
//! status. Each writes its report to a `Write` (stdout in the CLI, a buffer in tests) and
//! returns whether all was well, which becomes the exit code.

pub mod dead_letters;
pub mod doctor;
pub mod events;
pub mod exit;
pub mod keygen;
pub mod output;
pub mod reconcile;
pub mod replay;
pub mod status;
pub mod trace;
pub mod webhook;

use gcp_pubsub::PubSubTarget;
use pipeline_service::config::{Env, parse_duration};
use stark_client::Client;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use exit::UsageError;

/// What the commands talk to, built from the environment (or given by tests).
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// The variables it was built from ([`crate::env_file::operator_env`]).
    pub env: Env,
    /// Stark Bank, from the `STARK_*` variables.
    pub stark: Option<Client>,
    /// Pub/Sub, from `PUBSUB_PROJECT_ID`/`GOOGLE_CLOUD_PROJECT` and `PUBSUB_EMULATOR_HOST`.
    pub pubsub: Option<PubSubTarget>,
}

impl Context {
    /// Reads whatever is configured; commands complain about what they need and is missing.
    pub fn from_env(env: Env) -> Self {
        Context {
            stark: pipeline_service::config::stark_client(&env).ok(),
            pubsub: pubsub_target(&env).ok(),
            env,
        }
    }

    /// The Stark client, or a usage error naming the variable to set.
    pub fn stark(&self) -> anyhow::Result<&Client> {
        match &self.stark {
            Some(client) => Ok(client),
            None => {
                // Built again to report exactly which variable is wrong.
                let err = pipeline_service::config::stark_client(&self.env)
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "Stark credentials are not configured".into());
                Err(UsageError(format!("{err} (see .env.example)")).into())
            }
        }
    }

    /// The Pub/Sub target, or a usage error naming the variables to set.
    pub fn pubsub(&self) -> anyhow::Result<&PubSubTarget> {
        match &self.pubsub {
            Some(target) => Ok(target),
            None => {
                let err = pubsub_target(&self.env)
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "Pub/Sub is not configured".into());
                Err(UsageError(format!(
                    "{err}: set PUBSUB_PROJECT_ID (and PUBSUB_EMULATOR_HOST for the emulator)"
                ))
                .into())
            }
        }
    }
}

/// The Pub/Sub target the variables of `env` describe.
pub fn pubsub_target(env: &Env) -> Result<PubSubTarget, gcp_pubsub::TargetError> {
    PubSubTarget::from_lookup(|name| env.optional(name).map(str::to_owned))
}

/// Parses `--since`: an RFC 3339 instant (`2026-11-27T10:00:00Z`) or a duration back from
/// `now` (`90m`, `6h`, `2d`).
pub fn parse_since(text: &str, now: OffsetDateTime) -> anyhow::Result<OffsetDateTime> {
    let text = text.trim();
    if let Ok(instant) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(instant);
    }
    let back = parse_duration(text).map_err(|e| {
        UsageError(format!(
            "invalid --since {text:?}: expected RFC 3339 (2026-11-27T10:00:00Z) or a duration like 90m, 6h, 2d ({e})"
        ))
    })?;
    Ok(now - back)
}

/// `YYYY-MM-DD` of an instant (Stark's list filters take dates).
pub fn date_of(instant: OffsetDateTime) -> String {
    let date = instant.to_offset(time::UtcOffset::UTC).date();
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_instants_and_durations() {
        let now = OffsetDateTime::parse("2026-11-27T12:00:00Z", &Rfc3339).unwrap();
        assert_eq!(
            parse_since("6h", now).unwrap(),
            OffsetDateTime::parse("2026-11-27T06:00:00Z", &Rfc3339).unwrap()
        );
        assert_eq!(
            parse_since("2d", now).unwrap(),
            OffsetDateTime::parse("2026-11-25T12:00:00Z", &Rfc3339).unwrap()
        );
        assert_eq!(parse_since("2026-11-20T00:00:00Z", now).unwrap().day(), 20);
        assert!(
            parse_since("yesterday", now)
                .unwrap_err()
                .to_string()
                .contains("RFC 3339")
        );
        assert_eq!(
            parse_since("90m", now).unwrap(),
            OffsetDateTime::parse("2026-11-27T10:30:00Z", &Rfc3339).unwrap()
        );
        assert_eq!(date_of(now), "2026-11-27");
    }
}
