//! secp256k1 keys in the formats Stark Bank's SDKs read and write.
//!
//! Stark Bank signs and verifies with ECDSA over **secp256k1**. The official Python SDK writes the
//! private key as a SEC1 `EC PRIVATE KEY` PEM (sometimes after an `EC PARAMETERS` block, as
//! `openssl ecparam -genkey` does) and, about once in 256 keys, with a 31-byte secret because it
//! encodes the scalar at minimal length. We accept all of those plus PKCS#8, and refuse any other
//! curve with a message that says why.

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use k256::ecdsa::signature::{Signer as _, Verifier as _};
use k256::ecdsa::{Signature, SigningKey, VerifyingKey};
use k256::pkcs8::der::Decode as _;
use k256::pkcs8::{DecodePublicKey as _, EncodePublicKey as _, ObjectIdentifier};

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
        Self {
            signing: SigningKey::from(&secret),
        }
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
        Ok(Self { signing: key })
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
        PublicKey {
            verifying: *self.signing.verifying_key(),
        }
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
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey {
    verifying: VerifyingKey,
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
        Ok(Self { verifying })
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

    /// Verifies an already parsed signature, normalizing S first.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), SignatureError> {
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

/// Decodes base64 then strict DER. Exposed so that callers can reject malformed signatures before
/// doing any I/O.
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
