//! `.env` in the working directory, loaded with `dotenvy` before anything else runs: the root
//! CLI, the sandbox and every service read the same file the same way. A variable already set
//! always wins (so `STARK_ENVIRONMENT=production … ` means what it says), a missing file is
//! fine, and a malformed one stops the process naming the file, the line and the variable,
//! never a value (the file may hold the private key).

use std::path::{Path, PathBuf};

/// The file [`load_dotenv`] reads, relative to the working directory.
pub const DOTENV_FILE: &str = ".env";

/// Why `.env` could not be used. Never carries a value from the file: it may hold the key.
#[derive(Debug, thiserror::Error)]
pub enum DotenvError {
    /// A line `dotenvy` cannot parse.
    #[error(
        "{path} line {line}{}: cannot parse it as NAME=value; quote a value that has spaces, `#`, quotes or `$` in it (NAME=\"two words\")",
        .variable.as_deref().map(|v| format!(" ({v})")).unwrap_or_default()
    )]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The variable the line sets, when its name could be read.
        variable: Option<String>,
    },
    /// The file exists but cannot be read.
    #[error("cannot read {path}: {source}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Loads `dir/.env` into the process environment, keeping every variable already set, and
/// returns the file's path, or `None` when there is no such file (which is fine).
///
/// The whole file is parsed first, so that a malformed line sets nothing. Setting variables is
/// left to `dotenvy` (this crate forbids `unsafe`); call this before any thread is started,
/// as `cli::main` does before building the runtime.
pub fn load_dotenv(dir: &Path) -> Result<Option<PathBuf>, DotenvError> {
    let path = dir.join(DOTENV_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(DotenvError::Unreadable { path, source }),
    };
    parse_names(&path, &text)?;
    dotenvy::from_path(&path).map_err(|err| match err {
        dotenvy::Error::Io(source) => DotenvError::Unreadable {
            path: path.clone(),
            source,
        },
        other => malformed(&path, &text, &other),
    })?;
    Ok(Some(path))
}

/// The names a `.env` text sets, or the first malformed line.
pub fn parse_names(path: &Path, text: &str) -> Result<Vec<String>, DotenvError> {
    let mut names = Vec::new();
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        match item {
            Ok((name, _value)) => names.push(name),
            Err(err) => return Err(malformed(path, text, &err)),
        }
    }
    Ok(names)
}

/// Locates `dotenvy`'s parse error in the file. `dotenvy` reports the text it failed on (the
/// rest of the line, or of a multi-line value) but no line number, so the first line that is
/// not a comment and holds that text's first line is the one.
fn malformed(path: &Path, text: &str, err: &dotenvy::Error) -> DotenvError {
    let failing = match err {
        dotenvy::Error::LineParse(failing, _) => failing.lines().next().unwrap_or("").trim(),
        _ => "",
    };
    let found = text.lines().enumerate().find(|(_, line)| {
        let line = line.trim();
        !line.is_empty() && !line.starts_with('#') && line.contains(failing)
    });
    let (line, variable) = match found {
        Some((index, line)) => (index + 1, variable_of(line)),
        None => (1, None),
    };
    DotenvError::Malformed {
        path: path.to_owned(),
        line,
        variable,
    }
}

/// The variable name a `NAME=value` (or `export NAME=value`) line sets, if it has a valid one.
fn variable_of(line: &str) -> Option<String> {
    let line = line.trim();
    let line = line.strip_prefix("export ").unwrap_or(line);
    let (name, _) = line.split_once('=')?;
    let name = name.trim();
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
    valid.then(|| name.to_owned())
}

/// What every binary's `main` does: loads `./.env` ([`load_or_exit`]) while the process has one
/// thread, then starts the async runtime and runs `run` on it.
pub fn main<F: std::future::Future>(service: &str, run: impl FnOnce() -> F) -> F::Output {
    load_or_exit(service);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the async runtime starts")
        .block_on(run())
}

/// Loads `./.env` for the binary `service`, or stops it with exit code 2 and the reason on
/// stderr. Call it first in `main`, before the async runtime starts any thread: `dotenvy` sets
/// process variables.
pub fn load_or_exit(service: &str) {
    if let Err(err) = load_dotenv(Path::new(".")) {
        eprintln!("{service}: {err}");
        std::process::exit(2);
    }
}
