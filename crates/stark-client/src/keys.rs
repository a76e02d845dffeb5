//! secp256k1 keys in the formats Stark Bank's SDKs read and write.
//!
//! Stark Bank signs and verifies with ECDSA over **secp256k1**. The official Python SDK writes the
//! private key as a SEC1 `EC PRIVATE KEY` PEM (sometimes after an `EC PARAMETERS` block, as
//! `openssl ecparam -genkey` does) and, about once in 256 keys, with a 31-byte secret because it
//! encodes the scalar at minimal length. We accept all of those plus PKCS#8, and refuse any other
//! curve with a message that says why.
//!
//! # Two libraries, each where it is faster or stricter
//! Measured in one process by `benches/crypto.rs` (group `library`: SHA-256 of a 1.2 kB credited
//! event, high-S normalization, the ECDSA operation; medians of several runs on the project's
//! 2-core machine, shared with other builds, hence ranges):
//!
//! | operation | `k256` 0.13.4 | libsecp256k1 (`secp256k1` 0.33.1) |
//! |---|---|---|
//! | verify | 90–152 µs | 32–48 µs |
//! | sign | 47–81 µs | 56–104 µs |
//! | whole `Client::verify_webhook` (warm key, `verify_webhook/credited_event`) | 129 µs | 37–56 µs |
//!
//! - **Verification** (every webhook, the ingest hot path) uses **libsecp256k1**, about 3 times
//!   faster.
//! - **Signing** (one per API request) stays on **`k256`**: libsecp256k1 0.33 re-randomizes its
//!   context after every signature (a side-channel defence it offers no way to skip), which
//!   makes it slower, and keeping the secret in one library only means one copy of it, zeroized
//!   on drop.
//!   Both use RFC 6979 nonces and low-S, so they produce byte-identical signatures (tested).
//! - **Parsing** stays on `k256` too: PEM, SEC1 and PKCS#8 keys, key generation, and strict DER
//!   for signatures, which also rejects negative integers and `r` or `s` outside `1..n`
//!   (libsecp256k1 parses those into a signature that fails verification, which would look like
//!   a rotated key and cost a key refresh instead of a malformed-signature answer without I/O).

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use k256::ecdsa::signature::{Signer as _, Verifier as _};
use k256::ecdsa::{Signature, SigningKey, VerifyingKey};
use k256::pkcs8::der::Decode as _;
use k256::pkcs8::{DecodePublicKey as _, EncodePublicKey as _, ObjectIdentifier};
use sha2::Digest as _;

/// OID of secp256k1 (`1.3.132.0.10`), the only curve Stark Bank accepts.
const SECP256K1_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.10");
/// OID of P-256 (`1.2.840.10045.3.1.7`), named in errors because it is the usual mistake.
const P256_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

/// Why a key could not be loaded. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The text holds no PEM block we know.
    #[error("no `EC PRIVATE KEY` or `PRIVATE KEY` PEM block found{0}")]
    NoPemBlock(String),
    /// The PEM body is not valid base64 or DER.
    #[error("the key PEM is malformed: {0}")]
    Malformed(String),
    /// The key is on another curve.
    #[error(
        "the key is on curve {0}, but Stark Bank needs secp256k1 (OID 1.3.132.0.10); create one with `keygen` or `openssl ecparam -name secp256k1 -genkey`"
    )]
    WrongCurve(String),
    /// The secret is zero, out of range, or does not match the embedded public key.
    #[error("the secp256k1 private key is invalid: {0}")]
    Invalid(String),
    /// The key file could not be read.
    #[error("cannot read key file {path}: {source}")]
    Io {
        /// The path that was tried.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A public key PEM could not be parsed.
    #[error("invalid secp256k1 public key PEM: {0}")]
    PublicKey(String),
}

/// A Stark Bank private key. Its `Debug` output never shows the secret.
#[derive(Clone)]
pub struct PrivateKey {
    signing: SigningKey,
    /// Derived once: converting a point for libsecp256k1 is not free, and callers ask often.
    public: PublicKey,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("curve", &"secp256k1")
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl PrivateKey {
    /// Draws a new random key from the OS random source.
    pub fn generate() -> Self {
        let secret = k256::SecretKey::random(&mut k256::elliptic_curve::rand_core::OsRng);
        Self::from_signing(SigningKey::from(&secret))
    }

    fn from_signing(signing: SigningKey) -> Self {
        let public = PublicKey::from_verifying(*signing.verifying_key());
        Self { signing, public }
    }

    /// Parses a PEM: SEC1 `EC PRIVATE KEY` (optionally after an `EC PARAMETERS` block, 31- or
    /// 32-byte secret) or PKCS#8 `PRIVATE KEY`.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        if let Some(der) = pem_block(pem, "EC PRIVATE KEY")? {
            return Self::from_sec1_der(&der);
        }
        if let Some(der) = pem_block(pem, "PRIVATE KEY")? {
            return Self::from_pkcs8_der(&der);
        }
        let hint = if pem.contains("ENCRYPTED PRIVATE KEY") {
            " (encrypted keys are not supported; decrypt it with `openssl ec`)"
        } else if pem.contains("PUBLIC KEY") {
            " (this is a public key; the private key is needed to sign)"
        } else {
            ""
        };
        Err(KeyError::NoPemBlock(hint.to_owned()))
    }

    /// Parses a PEM given as standard base64 (how a PEM fits in one environment variable).
    pub fn from_base64_pem(b64: &str) -> Result<Self, KeyError> {
        let cleaned: String = b64.chars().filter(|c| !c.is_whitespace()).collect();
        let bytes = B64
            .decode(cleaned)
            .map_err(|e| KeyError::Malformed(format!("not base64 of a PEM: {e}")))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| KeyError::Malformed("base64 does not decode to PEM text".into()))?;
        Self::from_pem(&text)
    }

    /// Reads a PEM file (Secret Manager mounts the key as one).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_pem(&text)
    }

    /// Parses SEC1 DER, left-padding a short secret and checking the curve and public key.
    fn from_sec1_der(der: &[u8]) -> Result<Self, KeyError> {
        let parsed = sec1::EcPrivateKey::from_der(der)
            .map_err(|e| KeyError::Malformed(format!("SEC1 DER: {e}")))?;
        if let Some(oid) = parsed.parameters.and_then(|p| p.named_curve()) {
            check_curve(oid)?;
        }
        let secret = parsed.private_key;
        if secret.is_empty() || secret.len() > 32 {
            return Err(KeyError::Invalid(format!(
                "secret is {} bytes, expected at most 32",
                secret.len()
            )));
        }
        let mut padded = [0u8; 32];
        padded[32 - secret.len()..].copy_from_slice(secret);
        let key = SigningKey::from_bytes(&padded.into())
            .map_err(|_| KeyError::Invalid("secret is zero or not below the curve order".into()))?;
        if let Some(embedded) = parsed.public_key {
            let derived = key.verifying_key().to_encoded_point(false);
            if derived.as_bytes() != embedded {
                return Err(KeyError::Invalid(
                    "the embedded public key does not match the secret".into(),
                ));
            }
        }
        Ok(Self::from_signing(key))
    }

    /// Parses PKCS#8 DER, checking that it is an EC key on secp256k1.
    fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        let info = k256::pkcs8::PrivateKeyInfo::from_der(der)
            .map_err(|e| KeyError::Malformed(format!("PKCS#8 DER: {e}")))?;
        let ec_public_key = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
        if info.algorithm.oid != ec_public_key {
            return Err(KeyError::WrongCurve(format!(
                "(not an EC key: algorithm {})",
                info.algorithm.oid
            )));
        }
        let curve = info
            .algorithm
            .parameters_oid()
            .map_err(|_| KeyError::Malformed("PKCS#8 EC key without a named curve".into()))?;
        check_curve(curve)?;
        Self::from_sec1_der(info.private_key)
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    /// SEC1 PEM exactly as the Python SDK's `starkbank.key.create()` writes it: a leading newline,
    /// 64-character lines, the curve OID and the public key embedded.
    pub fn to_pem(&self) -> String {
        // Built by hand: `SecretKey::to_sec1_der` leaves out the curve parameters, and the
        // Python SDK's `PrivateKey.fromDer` refuses a SEC1 key without all four fields.
        use k256::pkcs8::der::Encode as _;
        let secret = self.signing.to_bytes();
        let public = self.signing.verifying_key().to_encoded_point(false);
        let der = sec1::EcPrivateKey {
            private_key: &secret,
            parameters: Some(sec1::EcParameters::NamedCurve(SECP256K1_OID)),
            public_key: Some(public.as_bytes()),
        }
        .to_der()
        .expect("a valid secp256k1 secret always encodes as SEC1");
        stark_pem("EC PRIVATE KEY", &der)
    }

    /// Signs `message` with ECDSA-SHA256 and returns the DER signature as standard base64, as
    /// Stark Bank expects in `Access-Signature`.
    pub fn sign_base64(&self, message: &[u8]) -> String {
        let signature: Signature = self.signing.sign(message);
        B64.encode(signature.to_der().as_bytes())
    }

    /// Signs and returns the raw signature (the sandbox needs it to produce high-S twins).
    pub fn sign(&self, message: &[u8]) -> Signature {
        self.signing.sign(message)
    }
}

/// A secp256k1 public key (Stark's webhook key, or a project's key registered at Stark).
///
/// Held in both libraries' forms, the same point: `k256` for encoding, libsecp256k1 for
/// verifying (see the module docs for why).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey {
    verifying: VerifyingKey,
    fast: secp256k1::PublicKey,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PublicKey").field(&self.to_pem()).finish()
    }
}

impl PublicKey {
    /// Parses an SPKI `PUBLIC KEY` PEM on secp256k1.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let der = pem_block(pem, "PUBLIC KEY")
            .map_err(|e| KeyError::PublicKey(e.to_string()))?
            .ok_or_else(|| KeyError::PublicKey("no `PUBLIC KEY` PEM block".into()))?;
        let spki = k256::pkcs8::SubjectPublicKeyInfoRef::from_der(&der)
            .map_err(|e| KeyError::PublicKey(format!("SPKI DER: {e}")))?;
        if let Ok(curve) = spki.algorithm.parameters_oid() {
            check_curve(curve)?;
        }
        let verifying = VerifyingKey::from_public_key_der(&der)
            .map_err(|e| KeyError::PublicKey(e.to_string()))?;
        Ok(Self::from_verifying(verifying))
    }

    fn from_verifying(verifying: VerifyingKey) -> Self {
        let point = verifying.to_encoded_point(false);
        let fast = secp256k1::PublicKey::from_slice(point.as_bytes())
            .expect("a point k256 accepted is a valid secp256k1 point for libsecp256k1 too");
        Self { verifying, fast }
    }

    /// SPKI PEM as the Python SDK writes it (leading newline, 64-character lines). Its base64
    /// always begins with `MFYwEAYHKoZIzj0CAQYFK4EEAAoDQgAE`.
    pub fn to_pem(&self) -> String {
        let der = self
            .verifying
            .to_public_key_der()
            .expect("a secp256k1 point always encodes as SPKI");
        stark_pem("PUBLIC KEY", der.as_bytes())
    }

    /// Verifies a base64 DER ECDSA-SHA256 signature over `message`, accepting high-S signatures
    /// (Stark's servers and older SDKs produce them; `k256` rejects them unless normalized).
    pub fn verify_base64(&self, message: &[u8], signature_b64: &str) -> Result<(), SignatureError> {
        let signature = parse_signature(signature_b64)?;
        self.verify(message, &signature)
    }

    /// Verifies an already parsed signature over SHA-256 of `message` with libsecp256k1,
    /// normalizing S first: libsecp256k1, like `k256`, refuses high-S signatures, and Stark's
    /// own are high-S.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), SignatureError> {
        // `Signature` guarantees r and s in 1..n, which is all that compact parsing checks.
        let mut fast = secp256k1::ecdsa::Signature::from_compact(&signature.to_bytes())
            .map_err(|_| SignatureError::Malformed("r or s out of range".into()))?;
        fast.normalize_s();
        let digest = secp256k1::Message::from_digest(sha2::Sha256::digest(message).into());
        secp256k1::ecdsa::verify(&fast, digest, &self.fast).map_err(|_| SignatureError::Mismatch)
    }

    /// The same check with `k256` alone (normalize S, verify): slower, kept so that tests and
    /// benchmarks can hold the two libraries against each other.
    pub fn verify_with_k256(
        &self,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), SignatureError> {
        let normalized = signature.normalize_s().unwrap_or(*signature);
        self.verifying
            .verify(message, &normalized)
            .map_err(|_| SignatureError::Mismatch)
    }

    /// The raw `k256` key, for callers that need lower-level access.
    pub fn as_verifying_key(&self) -> &VerifyingKey {
        &self.verifying
    }
}

/// Why a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Not base64, or not a strict DER ECDSA signature.
    #[error("the signature is malformed: {0}")]
    Malformed(String),
    /// Well formed, but not made by this key over this message.
    #[error("the signature does not match the content and public key")]
    Mismatch,
}

/// Decodes base64 then strict DER (minimal lengths and integers, no trailing bytes, r and s in
/// `1..n`). Exposed so that callers can reject malformed signatures before doing any I/O.
pub fn parse_signature(signature_b64: &str) -> Result<Signature, SignatureError> {
    let der = B64
        .decode(signature_b64.trim())
        .map_err(|e| SignatureError::Malformed(format!("not base64: {e}")))?;
    Signature::from_der(&der)
        .map_err(|_| SignatureError::Malformed("not a DER ECDSA signature".into()))
}

/// Returns the high-S twin of a signature (same validity, `s' = n - s`). The sandbox uses it to
/// sign like Stark's servers, which emit high-S about half of the time.
pub fn high_s_twin(signature: &Signature) -> Signature {
    let low = signature.normalize_s().unwrap_or(*signature);
    let (r, s) = low.split_scalars();
    Signature::from_scalars(r, -*s).expect("negating a non-zero scalar stays valid")
}

/// Base64 DER encoding of a signature.
pub fn signature_to_base64(signature: &Signature) -> String {
    B64.encode(signature.to_der().as_bytes())
}

fn check_curve(oid: ObjectIdentifier) -> Result<(), KeyError> {
    if oid == SECP256K1_OID {
        Ok(())
    } else if oid == P256_OID {
        Err(KeyError::WrongCurve("P-256 (prime256v1)".into()))
    } else {
        Err(KeyError::WrongCurve(oid.to_string()))
    }
}

/// Finds the first `-----BEGIN {label}-----` block and decodes its body. Blocks with other labels
/// (such as `EC PARAMETERS`) are skipped.
fn pem_block(text: &str, label: &str) -> Result<Option<Vec<u8>>, KeyError> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let Some(start) = text.find(&begin) else {
        return Ok(None);
    };
    let body_start = start + begin.len();
    let Some(stop) = text[body_start..].find(&end) else {
        return Err(KeyError::Malformed(format!("`{begin}` without `{end}`")));
    };
    let body: String = text[body_start..body_start + stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    B64.decode(body)
        .map(Some)
        .map_err(|e| KeyError::Malformed(format!("PEM body is not base64: {e}")))
}

/// PEM the way `starkbank.key.create()` formats it.
fn stark_pem(label: &str, der: &[u8]) -> String {
    let b64 = B64.encode(der);
    let mut out = format!("\n-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Writes a new key pair as `private-key.pem` and `public-key.pem` into `dir` (created if
/// missing). Refuses to overwrite existing files unless `overwrite` is set, because losing a
/// registered private key locks the project out of Stark Bank.
pub fn write_key_pair(
    dir: &Path,
    overwrite: bool,
) -> Result<(PrivateKey, [std::path::PathBuf; 2]), KeyError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| KeyError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let private_path = dir.join("private-key.pem");
    let public_path = dir.join("public-key.pem");
    if !overwrite {
        for path in [&private_path, &public_path] {
            if path.exists() {
                return Err(KeyError::Io {
                    path: path.display().to_string(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        "file exists; pass the overwrite option to replace it",
                    ),
                });
            }
        }
    }
    let key = PrivateKey::generate();
    write_private(&private_path, &key.to_pem()).map_err(io(&private_path))?;
    std::fs::write(&public_path, key.public_key().to_pem()).map_err(io(&public_path))?;
    Ok((key, [private_path, public_path]))
}

#[cfg(unix)]
fn write_private(path: &Path, pem: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(pem.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, pem: &str) -> std::io::Result<()> {
    std::fs::write(path, pem)
}
