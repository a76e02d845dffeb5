//! The root CLI's configuration from the environment and a `.env` file.
//!
//! Operators keep their settings in a `.env` in the directory they run `stark-pipeline` from
//! (the same file `set -a; . .env` feeds a shell, see `.env.example`). [`load_dotenv`] reads it
//! with `dotenvy` before anything else runs, and never overrides a variable that is already
//! set, so that `STARK_ENVIRONMENT=production stark-pipeline doctor` means what it says.
//!
//! Two mistakes cost real time and are caught here: a variable name with a typo
//! (`STARK_ACESS_ID`), which is silently ignored and then reported as "not set", and the
//! `BASE_URL` of older setups, which this project calls `STARK_ENVIRONMENT`. Both are warnings:
//! the command goes on, and says what it read. [`KNOWN_VARIABLES`] is the one list of the
//! `STARK_*`, `PAYOUT_*` and `PUBSUB_*` names the pipeline reads; a test holds it to
//! `.env.example` and to the names the crates' sources spell.

use pipeline_service::config::Env;

/// Every `STARK_*`, `PAYOUT_*` and `PUBSUB_*` variable that the services or the operator CLI
/// read, each documented in `.env.example`.
pub const KNOWN_VARIABLES: &[&str] = &[
    "STARK_ACCESS_ID",
    "STARK_ENVIRONMENT",
    "STARK_PRIVATE_KEY_FILE",
    "STARK_PRIVATE_KEY_PEM",
    "STARK_PRIVATE_KEY_BASE64",
    "STARK_LANGUAGE",
    "STARK_TIMEOUT_SECONDS",
    "STARK_WORKSPACE_ID",
    "PUBSUB_PROJECT_ID",
    "PUBSUB_EMULATOR_HOST",
    "PAYOUT_BANK_CODE",
    "PAYOUT_BRANCH_CODE",
    "PAYOUT_ACCOUNT_NUMBER",
    "PAYOUT_NAME",
    "PAYOUT_TAX_ID",
    "PAYOUT_ACCOUNT_TYPE",
    "PAYOUT_TRANSFER_FEE_CENTS",
    "PAYOUT_SETTLE_WAIT",
];

/// Prefixes checked for typos: the pipeline's own namespaces.
const CHECKED_PREFIXES: [&str; 3] = ["STARK_", "PAYOUT_", "PUBSUB_"];

/// Names under a checked prefix that belong to other tools of this repository: the local
/// Stark Bank's options (`stark-sandbox --help`) and the deploy scripts' runner settings.
const OTHER_TOOLS_PREFIXES: [&str; 2] = ["STARK_SANDBOX_", "STARK_PIPELINE_"];

/// The name older setups used for the Stark environment (a base URL); read as an alias.
pub const BASE_URL_ALIAS: &str = "BASE_URL";

pub use pipeline_service::dotenv::{DOTENV_FILE, DotenvError, load_dotenv};

/// Warnings about names under the pipeline's prefixes that nothing reads: most likely typos,
/// with the closest known name when there is one.
pub fn check_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut warnings = Vec::new();
    for name in names {
        let checked = CHECKED_PREFIXES.iter().any(|p| name.starts_with(p));
        let other_tool = OTHER_TOOLS_PREFIXES.iter().any(|p| name.starts_with(p));
        if !checked || other_tool || KNOWN_VARIABLES.contains(&name) {
            continue;
        }
        let closest = KNOWN_VARIABLES
            .iter()
            .map(|known| (strsim::levenshtein(name, known), *known))
            .min()
            .filter(|(distance, _)| *distance <= 3)
            .map(|(_, known)| format!("; did you mean {known}?"))
            .unwrap_or_default();
        warnings.push(format!(
            "warning: {name} is not a variable the pipeline reads, so it has no effect{closest}"
        ));
    }
    warnings
}

/// The process environment as the operator commands read it: `BASE_URL` stands in for an
/// unset `STARK_ENVIRONMENT`, with a warning naming the preferred variable.
pub fn operator_env() -> (Env, Vec<String>) {
    let vars: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    resolve(vars)
}

/// [`operator_env`] over any set of variables.
pub fn resolve(mut vars: Vec<(String, String)>) -> (Env, Vec<String>) {
    let value = |vars: &[(String, String)], name: &str| {
        vars.iter()
            .find(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.clone())
    };
    let mut warnings = check_names(vars.iter().map(|(k, _)| k.as_str()));
    match (
        value(&vars, "STARK_ENVIRONMENT"),
        value(&vars, BASE_URL_ALIAS),
    ) {
        (None, Some(base_url)) => {
            warnings.push(format!(
                "warning: reading {BASE_URL_ALIAS} as STARK_ENVIRONMENT; rename it to STARK_ENVIRONMENT (sandbox, production or a base URL ending in /v2)"
            ));
            vars.retain(|(k, _)| k != "STARK_ENVIRONMENT");
            vars.push(("STARK_ENVIRONMENT".to_owned(), base_url));
        }
        (Some(environment), Some(base_url)) if environment != base_url => {
            warnings.push(format!(
                "warning: {BASE_URL_ALIAS} is ignored because STARK_ENVIRONMENT is set; remove {BASE_URL_ALIAS}"
            ));
        }
        _ => {}
    }
    let env = Env::from_pairs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    (env, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline_service::dotenv::parse_names;
    use std::path::{Path, PathBuf};

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("env-file-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn typos_are_warned_about_with_the_closest_name() {
        let warnings = check_names([
            "STARK_ACESS_ID",
            "STARK_ACCESS_ID",
            "PAYOUT_NAME",
            "PUBSUB_PROJECT",
            "STARK_SANDBOX_PORT",
            "HOME",
        ]);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].contains("STARK_ACESS_ID") && warnings[0].contains("STARK_ACCESS_ID?"),
            "{warnings:?}"
        );
        assert!(warnings[1].contains("PUBSUB_PROJECT_ID?"), "{warnings:?}");
    }

    #[test]
    fn base_url_is_an_alias_of_stark_environment() {
        let pairs = |list: &[(&str, &str)]| {
            list.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<Vec<_>>()
        };
        let (env, warnings) = resolve(pairs(&[("BASE_URL", "http://127.0.0.1:1/v2")]));
        assert_eq!(
            env.optional("STARK_ENVIRONMENT"),
            Some("http://127.0.0.1:1/v2")
        );
        assert!(warnings[0].contains("rename it to STARK_ENVIRONMENT"));
        let (env, warnings) = resolve(pairs(&[
            ("BASE_URL", "http://127.0.0.1:1/v2"),
            ("STARK_ENVIRONMENT", "sandbox"),
        ]));
        assert_eq!(env.optional("STARK_ENVIRONMENT"), Some("sandbox"));
        assert!(warnings[0].contains("ignored"), "{warnings:?}");
        let (_, warnings) = resolve(pairs(&[("STARK_ENVIRONMENT", "sandbox")]));
        assert!(warnings.is_empty());
    }

    #[test]
    fn a_malformed_line_is_named_without_its_value() {
        let dir = temp_dir("malformed");
        std::fs::write(
            dir.join(DOTENV_FILE),
            "# comment\nSTARK_ACCESS_ID=project/1\n\nPAYOUT_NAME=Stark Bank S.A.\n",
        )
        .unwrap();
        let err = load_dotenv(&dir).unwrap_err().to_string();
        assert!(err.contains("line 4 (PAYOUT_NAME)"), "{err}");
        assert!(!err.contains("Bank S.A."), "{err}");
        std::fs::write(
            dir.join(DOTENV_FILE),
            "A_OK=1\nSTARK_PRIVATE_KEY_PEM=\"-----BEGIN secret\n",
        )
        .unwrap();
        let err = load_dotenv(&dir).unwrap_err().to_string();
        assert!(err.contains("line 2 (STARK_PRIVATE_KEY_PEM)"), "{err}");
        assert!(!err.contains("secret"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// bash (`set -a; . .env.example`, as the README and deploy scripts do) reads every value
    /// of `.env.example` exactly as dotenvy does.
    #[test]
    fn the_example_reads_the_same_in_bash() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let example = std::fs::read_to_string(root.join(".env.example")).unwrap();
        let expected: Vec<(String, String)> = dotenvy::from_read_iter(example.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
        let script = expected
            .iter()
            .map(|(name, _)| format!("printf '%s\\0' \"${name}\";"))
            .collect::<String>();
        let output = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!("set -eu; set -a; . ./.env.example; {script}"))
            .current_dir(root)
            .env_clear()
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let read: Vec<&str> = std::str::from_utf8(&output.stdout)
            .unwrap()
            .split_terminator('\0')
            .collect();
        let values: Vec<&str> = expected.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(read, values);
    }

    #[test]
    fn a_missing_file_is_fine() {
        let dir = temp_dir("missing");
        assert!(load_dotenv(&dir).unwrap().is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// `.env.example` parses, documents every known variable, and sets no unknown one; the
    /// crates spell no `STARK_*`/`PAYOUT_*`/`PUBSUB_*` name outside the list.
    #[test]
    fn the_known_list_matches_the_example_and_the_sources() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let example = std::fs::read_to_string(root.join(".env.example")).unwrap();
        let names = parse_names(Path::new(".env.example"), &example).unwrap();
        assert!(
            check_names(names.iter().map(String::as_str)).is_empty(),
            "{names:?}"
        );
        for known in KNOWN_VARIABLES {
            assert!(
                example.contains(&format!("{known}=")),
                "{known} is not documented in .env.example"
            );
        }
        let mut spelled = Vec::new();
        let mut dirs = vec![root.join("crates"), root.join("src")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    if !path.ends_with("target") {
                        dirs.push(path);
                    }
                } else if path.extension().is_some_and(|e| e == "rs")
                    && !path.ends_with("src/env_file.rs")
                {
                    let source = std::fs::read_to_string(&path).unwrap();
                    for piece in source.split('"').skip(1).step_by(2) {
                        let is_name = CHECKED_PREFIXES.iter().any(|p| piece.starts_with(p))
                            && piece.len() > 7
                            && piece
                                .bytes()
                                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
                        if is_name {
                            spelled.push((piece.to_owned(), path.clone()));
                        }
                    }
                }
            }
        }
        let unknown: Vec<_> = spelled
            .iter()
            .filter(|(name, _)| !check_names([name.as_str()]).is_empty())
            .collect();
        assert!(
            unknown.is_empty(),
            "add these to KNOWN_VARIABLES: {unknown:?}"
        );
    }
}
