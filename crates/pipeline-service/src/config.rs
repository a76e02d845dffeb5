//! Configuration from the environment, read once at start.
//!
//! Every getter returns a [`ConfigError`] naming the variable, so that a service that cannot
//! start says exactly which variable to fix. Values are never echoed for secret variables.

use std::collections::HashMap;
use std::fmt::{self, Display};
use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};
use stark_client::{AccessId, Client, ClientConfig, Environment, Language, PrivateKey};

/// Variables whose values are secrets: kept as [`SecretString`], never in `Debug` output, and
/// read only through [`Env::secret`].
const SECRET_VARIABLES: [&str; 2] = ["STARK_PRIVATE_KEY_PEM", "STARK_PRIVATE_KEY_BASE64"];

/// A missing or invalid variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration error: {variable}: {reason}")]
pub struct ConfigError {
    /// The variable's name.
    pub variable: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    /// Builds an error for `variable`.
    pub fn new(variable: &str, reason: impl Into<String>) -> Self {
        Self {
            variable: variable.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Unwraps a configuration result, or stops the process with exit code 2 and a message naming
/// the variable (on stderr and in the logs), as every binary must at start-up.
pub fn or_exit<T>(service: &str, result: Result<T, ConfigError>) -> T {
    match result {
        Ok(value) => value,
        Err(err) => {
            tracing::error!(event = "config_invalid", variable = %err.variable, "{err}");
            eprintln!("{service}: {err}");
            std::process::exit(2);
        }
    }
}

/// A snapshot of environment variables (the process's, or a map in tests). Secret values (the
/// private key's PEM) are held apart, as [`SecretString`]s, and `Debug` shows names only.
#[derive(Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
    secrets: HashMap<String, SecretString>,
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self
            .vars
            .keys()
            .chain(self.secrets.keys())
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        f.debug_struct("Env").field("names", &names).finish()
    }
}

impl Env {
    fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut env = Env::default();
        for (name, value) in pairs {
            if SECRET_VARIABLES.contains(&name.as_str()) {
                env.secrets.insert(name, SecretString::from(value));
            } else {
                env.vars.insert(name, value);
            }
        }
        env
    }

    /// A secret variable's value if set and not empty.
    pub fn secret(&self, name: &str) -> Option<&SecretString> {
        self.secrets
            .get(name)
            .filter(|v| !v.expose_secret().trim().is_empty())
    }

    /// The process environment. Variables that are not valid UTF-8 are reported when read.
    pub fn from_process() -> Self {
        Self::new(std::env::vars_os().filter_map(|(k, v)| {
            Some((
                k.into_string().ok()?,
                v.into_string().unwrap_or_else(|_| "\u{fffd}".into()),
            ))
        }))
    }

    /// A fixed set of variables.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self::new(pairs.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())))
    }

    /// The value if set and not empty.
    pub fn optional(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    /// The value, or an error naming the variable.
    pub fn required(&self, name: &str) -> Result<&str, ConfigError> {
        self.optional(name)
            .ok_or_else(|| ConfigError::new(name, "is required but not set"))
    }

    /// Parses the value, or returns `default` when unset.
    pub fn parse_or<T>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.optional(name) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|e| ConfigError::new(name, format!("invalid value {raw:?}: {e}"))),
        }
    }

    /// Parses a required value.
    pub fn parse_required<T>(&self, name: &str) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        let raw = self.required(name)?;
        raw.trim()
            .parse()
            .map_err(|e| ConfigError::new(name, format!("invalid value {raw:?}: {e}")))
    }

    /// A wait inside one push delivery (e.g. `INVOICE_VISIBILITY_WAIT`), `default` when unset:
    /// at most [`MAX_PUSH_WAIT`], so that the push is answered well within the subscription's
    /// ack deadline (60 s) and Pub/Sub does not redeliver a message still being handled.
    pub fn push_wait(&self, name: &str, default: Duration) -> Result<Duration, ConfigError> {
        let wait = match self.optional(name) {
            None => default,
            Some(raw) => parse_duration(raw).map_err(|e| ConfigError::new(name, e))?,
        };
        if wait > MAX_PUSH_WAIT {
            return Err(ConfigError::new(
                name,
                format!(
                    "must be at most {}: the push must be answered within the ack deadline",
                    humantime::format_duration(MAX_PUSH_WAIT)
                ),
            ));
        }
        Ok(wait)
    }

    /// `PORT` (Cloud Run sets it), default 8080.
    pub fn port(&self) -> Result<u16, ConfigError> {
        self.parse_or("PORT", 8080)
    }
}

/// What a service that talks only to Stark is given besides its settings: the client, built
/// from `STARK_*` (see [`stark_client`]). invoice-sender and money-sender take it as their
/// `Deps`; tests and the local stack build it around a sandbox client.
#[derive(Debug, Clone)]
pub struct StarkDeps {
    /// Stark Bank, with the pipeline's credentials.
    pub stark: Client,
}

impl StarkDeps {
    /// The Stark client from `STARK_*`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            stark: stark_client(env)?,
        })
    }
}

/// The longest wait a push handler may spend inside one delivery ([`Env::push_wait`]).
pub const MAX_PUSH_WAIT: Duration = Duration::from_secs(30);

/// Parses a duration as people type it: `500ms`, `90s`, `90m`, `6h`, `2d`, `1h 30m`
/// (`humantime`'s units). The one duration syntax of every flag and variable, so that `6h`
/// means the same in `replay`, `reconcile` and the benchmarks.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("invalid duration {text:?}: {e} (e.g. 90m, 6h, 2d)"))
}

/// Reads the Stark Bank credentials and builds a client:
/// `STARK_ACCESS_ID`, `STARK_ENVIRONMENT`, exactly one of `STARK_PRIVATE_KEY_FILE`,
/// `STARK_PRIVATE_KEY_PEM`, `STARK_PRIVATE_KEY_BASE64`, and optional `STARK_LANGUAGE`,
/// `STARK_TIMEOUT_SECONDS`.
pub fn stark_client(env: &Env) -> Result<Client, ConfigError> {
    let access_id = AccessId::parse(env.required("STARK_ACCESS_ID")?)
        .map_err(|e| ConfigError::new("STARK_ACCESS_ID", e.to_string()))?;
    let environment = Environment::parse(env.required("STARK_ENVIRONMENT")?)
        .map_err(|e| ConfigError::new("STARK_ENVIRONMENT", e.to_string()))?;
    let key = private_key(env)?;
    let mut config = ClientConfig::new(access_id, key, environment);
    config.language = match env.optional("STARK_LANGUAGE").unwrap_or("en-US") {
        "en-US" => Language::English,
        "pt-BR" => Language::Portuguese,
        other => {
            return Err(ConfigError::new(
                "STARK_LANGUAGE",
                format!("invalid value {other:?}: expected en-US or pt-BR"),
            ));
        }
    };
    let timeout: f64 = env.parse_or("STARK_TIMEOUT_SECONDS", 10.0)?;
    if !(0.1..=300.0).contains(&timeout) {
        return Err(ConfigError::new(
            "STARK_TIMEOUT_SECONDS",
            "must be between 0.1 and 300",
        ));
    }
    config.timeout = Duration::from_secs_f64(timeout);
    Client::new(config).map_err(|e| ConfigError::new("STARK_ENVIRONMENT", e.to_string()))
}

/// The private key from exactly one of the three variables. Errors describe the problem but
/// never include the key.
fn private_key(env: &Env) -> Result<PrivateKey, ConfigError> {
    const FILE: &str = "STARK_PRIVATE_KEY_FILE";
    const PEM: &str = "STARK_PRIVATE_KEY_PEM";
    const BASE64: &str = "STARK_PRIVATE_KEY_BASE64";
    let set: Vec<&str> = [FILE, PEM, BASE64]
        .into_iter()
        .filter(|v| env.optional(v).is_some() || env.secret(v).is_some())
        .collect();
    let secret = |name: &str| {
        env.secret(name)
            .map(|s| s.expose_secret())
            .ok_or_else(|| ConfigError::new(name, "is required but not set"))
    };
    match set.as_slice() {
        [FILE] => PrivateKey::from_file(env.required(FILE)?)
            .map_err(|e| ConfigError::new(FILE, e.to_string())),
        // A PEM pasted into one line often carries literal `\n` sequences.
        [PEM] => PrivateKey::from_pem(&secret(PEM)?.replace("\\n", "\n"))
            .map_err(|e| ConfigError::new(PEM, e.to_string())),
        [BASE64] => PrivateKey::from_base64_pem(secret(BASE64)?)
            .map_err(|e| ConfigError::new(BASE64, e.to_string())),
        [] => Err(ConfigError::new(
            FILE,
            format!("no Stark private key: set one of {FILE}, {PEM} or {BASE64}"),
        )),
        many => Err(ConfigError::new(
            many[0],
            format!("set only one of {}", many.join(", ")),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "-----BEGIN EC PRIVATE KEY-----\nMHQCAQEEIKtZlER9AtrHGtFwaHqw9I+X0wxMfNOHE8ASRBjtG/gsoAcGBSuBBAAK\noUQDQgAECezR47SwR1qHfzqP1nCCx+Osu5iah4zT2VyV015/GGvIEzWa3UCPXD1D\nAP5HWKoPB5WgdPynYYzDfco13aHh/Q==\n-----END EC PRIVATE KEY-----\n";

    #[test]
    fn errors_name_the_variable() {
        let env = Env::from_pairs([("STARK_ENVIRONMENT", "sandbox")]);
        assert_eq!(stark_client(&env).unwrap_err().variable, "STARK_ACCESS_ID");
        let env = Env::from_pairs([
            ("STARK_ACCESS_ID", "project/1"),
            ("STARK_ENVIRONMENT", "staging"),
        ]);
        assert_eq!(
            stark_client(&env).unwrap_err().variable,
            "STARK_ENVIRONMENT"
        );
        let env = Env::from_pairs([
            ("STARK_ACCESS_ID", "project/1"),
            ("STARK_ENVIRONMENT", "sandbox"),
        ]);
        assert_eq!(
            stark_client(&env).unwrap_err().variable,
            "STARK_PRIVATE_KEY_FILE"
        );
        let env = Env::from_pairs([
            ("STARK_ACCESS_ID", "project/1"),
            ("STARK_ENVIRONMENT", "sandbox"),
            ("STARK_PRIVATE_KEY_PEM", "garbage"),
        ]);
        assert_eq!(
            stark_client(&env).unwrap_err().variable,
            "STARK_PRIVATE_KEY_PEM"
        );
        let env = Env::from_pairs([("PORT", "http")]);
        let err = env.port().unwrap_err();
        assert_eq!(err.variable, "PORT");
        assert!(err.to_string().contains("\"http\""));
    }

    #[test]
    fn push_waits_are_bounded_by_the_ack_deadline() {
        let default = Duration::from_secs(2);
        let env = Env::from_pairs([("WAIT", "750ms"), ("LONG", "31s"), ("BAD", "soon")]);
        assert_eq!(
            env.push_wait("WAIT", default),
            Ok(Duration::from_millis(750))
        );
        assert_eq!(env.push_wait("UNSET", default), Ok(default));
        let err = env.push_wait("LONG", default).unwrap_err();
        assert_eq!(err.variable, "LONG");
        assert!(err.reason.contains("at most 30s"), "{err}");
        let err = env.push_wait("BAD", default).unwrap_err();
        assert!(err.reason.contains("soon"), "{err}");
        assert_eq!(
            Env::from_pairs([("WAIT", "0s")]).push_wait("WAIT", default),
            Ok(Duration::ZERO)
        );
    }

    #[test]
    fn durations_use_one_syntax() {
        assert_eq!(parse_duration("6h"), Ok(Duration::from_secs(6 * 3600)));
        assert_eq!(parse_duration(" 2d "), Ok(Duration::from_secs(2 * 86_400)));
        assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(90 * 60)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(
            parse_duration("yesterday")
                .unwrap_err()
                .contains("yesterday")
        );
        assert!(parse_duration("5").is_err(), "a unit is required");
    }

    #[test]
    fn one_line_pem_with_escaped_newlines_is_accepted_and_never_echoed() {
        let escaped = KEY.replace('\n', "\\n");
        let env = Env::from_pairs([
            ("STARK_ACCESS_ID", "project/1"),
            ("STARK_ENVIRONMENT", "http://127.0.0.1:1/v2"),
            ("STARK_PRIVATE_KEY_PEM", escaped.as_str()),
        ]);
        assert!(stark_client(&env).is_ok());
        let broken = KEY.replace("MHQCAQEE", "MHQCAQEF");
        let env = Env::from_pairs([
            ("STARK_ACCESS_ID", "project/1"),
            ("STARK_ENVIRONMENT", "sandbox"),
            ("STARK_PRIVATE_KEY_PEM", broken.as_str()),
        ]);
        let err = stark_client(&env).unwrap_err().to_string();
        assert!(!err.contains("IKtZlER9AtrHGtFwaHqw9I"), "{err}");
        let debug = format!("{env:?}");
        assert!(debug.contains("STARK_PRIVATE_KEY_PEM"), "{debug}");
        assert!(!debug.contains("IKtZlER9AtrHGtFwaHqw9I"), "{debug}");
        let env = Env::from_pairs([
            ("STARK_ACCESS_ID", "project/1"),
            ("STARK_ENVIRONMENT", "sandbox"),
            ("STARK_PRIVATE_KEY_PEM", KEY),
            ("STARK_PRIVATE_KEY_FILE", "/k"),
        ]);
        assert!(stark_client(&env).unwrap_err().reason.contains("only one"));
    }
}
