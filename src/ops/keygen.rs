//! `keygen`: a new Stark Bank key pair in the SDKs' formats.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;

/// `stark-pipeline keygen` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct KeygenArgs {
    /// Directory for `private-key.pem` and `public-key.pem` (created if missing).
    #[arg(long, default_value = "keys")]
    pub dir: PathBuf,
    /// Replace existing key files (the old private key is lost).
    #[arg(long)]
    pub force: bool,
}

/// Writes the pair and prints the next steps.
pub fn run(args: &KeygenArgs, out: &mut dyn Write) -> anyhow::Result<bool> {
    let (_, [private, public]) = stark_client::keys::write_key_pair(&args.dir, args.force)
        .context("writing the key pair")?;
    writeln!(
        out,
        "Wrote {} (secret, mode 0600) and {}.",
        private.display(),
        public.display()
    )?;
    writeln!(out, "Next steps:")?;
    writeln!(
        out,
        "  1. In Stark Bank's web banking: Menu > Integrations > New Project, paste the content of {}.",
        public.display()
    )?;
    writeln!(
        out,
        "     Stark shows the project id: set STARK_ACCESS_ID=project/<that id>."
    )?;
    writeln!(
        out,
        "  2. Keep {} secret: locally point STARK_PRIVATE_KEY_FILE at it;",
        private.display()
    )?;
    writeln!(
        out,
        "     on Google Cloud, deploy/ stores it in Secret Manager and mounts it as a file."
    )?;
    writeln!(
        out,
        "  3. Never commit it (the repository's .gitignore ignores keys/ and top-level *.pem files)."
    )?;
    Ok(true)
}
