//! Keys and signatures against Stark's own test vectors (two made by Stark's real servers).

use serde_json::Value;
use stark_client::keys::{high_s_twin, parse_signature, signature_to_base64};
use stark_client::{KeyError, PrivateKey, PublicKey, SignatureError};

fn vectors() -> Value {
    serde_json::from_str(include_str!("data/vectors.json")).expect("vectors.json parses")
}

fn s(v: &Value) -> &str {
    v.as_str().expect("string")
}

#[test]
fn vector_key_pair_matches_and_public_pem_has_stark_prefix() {
    let v = vectors();
    let private = PrivateKey::from_pem(s(&v["privateKeyPem"])).unwrap();
    let public = PublicKey::from_pem(s(&v["publicKeyPem"])).unwrap();
    assert_eq!(private.public_key(), public);
    assert!(public.to_pem().contains("MFYwEAYHKoZIzj0CAQYFK4EEAAoDQgAE"));
}

#[test]
fn every_high_s_and_low_s_vector_verifies() {
    let v = vectors();
    let public = PublicKey::from_pem(s(&v["publicKeyPem"])).unwrap();
    let message = s(&v["message"]).as_bytes();
    let high = v["highSSignatures"].as_array().unwrap();
    let low = v["lowSSignatures"].as_array().unwrap();
    assert_eq!((high.len(), low.len()), (6, 7));
    for sig in high {
        assert_eq!(sig["highS"], true);
        public
            .verify_base64(message, s(&sig["signatureBase64"]))
            .unwrap();
        public
            .verify_base64(message, s(&sig["lowSEquivalentBase64"]))
            .unwrap();
        // Our twin of the low-S form is byte-identical to the high-S original.
        let low_form = parse_signature(s(&sig["lowSEquivalentBase64"])).unwrap();
        assert_eq!(
            signature_to_base64(&high_s_twin(&low_form)),
            s(&sig["signatureBase64"])
        );
    }
    for sig in low {
        public
            .verify_base64(message, s(&sig["signatureBase64"]))
            .unwrap();
    }
}

#[test]
fn signatures_fail_on_tampered_message_or_wrong_key() {
    let v = vectors();
    let public = PublicKey::from_pem(s(&v["publicKeyPem"])).unwrap();
    let sig = s(&v["highSSignatures"][0]["signatureBase64"]);
    let mut tampered = s(&v["message"]).to_owned();
    tampered.push(' ');
    assert_eq!(
        public.verify_base64(tampered.as_bytes(), sig),
        Err(SignatureError::Mismatch)
    );
    let other = PrivateKey::generate().public_key();
    assert_eq!(
        other.verify_base64(s(&v["message"]).as_bytes(), sig),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn real_stark_webhook_signatures_verify_high_and_low_s() {
    let v = vectors();
    let stark = PublicKey::from_pem(s(&v["starkWebhookVector"]["starkPublicKeyPem"])).unwrap();
    for vector in [&v["starkWebhookVector"], &v["starkWebhookVector2"]] {
        let content = s(&vector["content"]).as_bytes();
        let high = parse_signature(s(&vector["digitalSignature"])).unwrap();
        assert!(
            high.normalize_s().is_some(),
            "Stark's own signature is high-S"
        );
        stark
            .verify_base64(content, s(&vector["digitalSignature"]))
            .unwrap();
        stark
            .verify_base64(content, s(&vector["digitalSignatureLowS"]))
            .unwrap();
    }
    let w = &v["starkWebhookVector"];
    assert_eq!(
        stark.verify_base64(s(&w["content"]).as_bytes(), s(&w["invalidSignature"])),
        Err(SignatureError::Mismatch)
    );
    assert!(matches!(
        stark.verify_base64(s(&w["content"]).as_bytes(), s(&w["malformedSignature"])),
        Err(SignatureError::Malformed(_))
    ));
}

#[test]
fn short_31_byte_secret_loads_and_signs_like_python() {
    let v = vectors();
    let vector = &v["shortSecretKeyVector"];
    let private = PrivateKey::from_pem(s(&vector["privateKeyPem"])).unwrap();
    let public = PublicKey::from_pem(s(&vector["publicKeyPem"])).unwrap();
    assert_eq!(private.public_key(), public);
    let message = s(&vector["message"]).as_bytes();
    public
        .verify_base64(message, s(&vector["signatureBase64"]))
        .unwrap();
    public
        .verify_base64(message, &private.sign_base64(message))
        .unwrap();
    // Re-encoding pads the secret to 32 bytes and still round-trips.
    let again = PrivateKey::from_pem(&private.to_pem()).unwrap();
    assert_eq!(again.public_key(), public);
}

#[test]
fn truncated_or_garbage_signatures_are_malformed() {
    let key = PrivateKey::generate();
    let sig = key.sign_base64(b"hello");
    let truncated = &sig[..sig.len() - 8];
    for bad in [truncated, "", "not base64!!", "AAAA"] {
        assert!(
            matches!(
                key.public_key().verify_base64(b"hello", bad),
                Err(SignatureError::Malformed(_))
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn openssl_formats_load_ec_parameters_and_pkcs8() {
    let with_params = PrivateKey::from_pem(include_str!("data/ec-params-secp256k1.pem")).unwrap();
    with_params
        .public_key()
        .verify_base64(b"m", &with_params.sign_base64(b"m"))
        .unwrap();
    let pkcs8 = PrivateKey::from_pem(include_str!("data/pkcs8-secp256k1.pem")).unwrap();
    let public = PublicKey::from_pem(include_str!("data/pkcs8-secp256k1.pub.pem")).unwrap();
    assert_eq!(pkcs8.public_key(), public);
}

#[test]
fn p256_keys_are_refused_naming_secp256k1() {
    for pem in [
        include_str!("data/p256-sec1.pem"),
        include_str!("data/p256-pkcs8.pem"),
    ] {
        let err = PrivateKey::from_pem(pem).unwrap_err();
        assert!(matches!(err, KeyError::WrongCurve(_)), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("secp256k1") && text.contains("P-256"),
            "{text}"
        );
    }
    let err = PublicKey::from_pem(include_str!("data/p256-public.pem")).unwrap_err();
    assert!(err.to_string().contains("secp256k1"), "{err}");
}

#[test]
fn base64_pem_and_file_loading() {
    use base64::Engine as _;
    let key = PrivateKey::generate();
    let pem = key.to_pem();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&pem);
    assert_eq!(
        PrivateKey::from_base64_pem(&b64).unwrap().public_key(),
        key.public_key()
    );
    let dir = std::env::temp_dir().join(format!("stark-client-keys-{}", std::process::id()));
    let (written, [private_path, public_path]) =
        stark_client::keys::write_key_pair(&dir, false).unwrap();
    assert_eq!(
        PrivateKey::from_file(&private_path).unwrap().public_key(),
        written.public_key()
    );
    let public_text = std::fs::read_to_string(&public_path).unwrap();
    assert_eq!(
        PublicKey::from_pem(&public_text).unwrap(),
        written.public_key()
    );
    // The exact shape the Python SDK writes: leading newline, 64-column lines, trailing newline.
    let private_text = std::fs::read_to_string(&private_path).unwrap();
    assert!(private_text.starts_with("\n-----BEGIN EC PRIVATE KEY-----\n"));
    assert!(private_text.ends_with("-----END EC PRIVATE KEY-----\n"));
    assert!(private_text.lines().all(|l| l.len() <= 64));
    assert!(
        public_text.starts_with("\n-----BEGIN PUBLIC KEY-----\nMFYwEAYHKoZIzj0CAQYFK4EEAAoDQgAE")
    );
    // A second write refuses to overwrite; with the flag it replaces both files.
    let err = stark_client::keys::write_key_pair(&dir, false).unwrap_err();
    assert!(err.to_string().contains("private-key.pem"), "{err}");
    let (replaced, _) = stark_client::keys::write_key_pair(&dir, true).unwrap();
    assert_ne!(replaced.public_key(), written.public_key());
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        PrivateKey::from_file(&private_path)
            .unwrap_err()
            .to_string()
            .contains("private-key.pem")
    );
}

#[test]
fn private_key_debug_and_errors_never_show_the_secret() {
    let v = vectors();
    let pem = s(&v["privateKeyPem"]);
    let key = PrivateKey::from_pem(pem).unwrap();
    let debug = format!("{key:?}");
    assert!(debug.contains("redacted"));
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!debug.contains(&body[..20]));
    // A damaged key: the error names the problem but not the bytes.
    let damaged = pem.replace("MHQCAQEE", "MHQCAQEF");
    let err = PrivateKey::from_pem(&damaged).unwrap_err().to_string();
    assert!(!err.contains(&body[8..28]), "{err}");
}

#[test]
fn public_key_is_not_a_private_key() {
    let v = vectors();
    let err = PrivateKey::from_pem(s(&v["publicKeyPem"])).unwrap_err();
    assert!(err.to_string().contains("public key"), "{err}");
}
