//! Keys and signatures against Stark's own test vectors (two made by Stark's real servers).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
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

// ---- k256 and libsecp256k1 against each other ---------------------------------------------

/// One signature fixture and the verdict it must get.
struct Case {
    name: String,
    key: PublicKey,
    message: Vec<u8>,
    signature: String,
    valid: bool,
}

/// Every signature fixture of the project: the high-S signatures and their low-S twins, the
/// low-S ones, the 31-byte-secret key's, both real Stark webhooks (high-S and low-S), the invalid
/// and the malformed one; then each valid one again over a tampered message and under a wrong key.
fn every_signature_fixture() -> Vec<Case> {
    let v = vectors();
    let vector_key = PublicKey::from_pem(s(&v["publicKeyPem"])).unwrap();
    let stark = PublicKey::from_pem(s(&v["starkWebhookVector"]["starkPublicKeyPem"])).unwrap();
    let short = &v["shortSecretKeyVector"];
    let short_key = PublicKey::from_pem(s(&short["publicKeyPem"])).unwrap();
    let message = s(&v["message"]).as_bytes().to_vec();
    let case = |name: String, key: PublicKey, message: &[u8], signature: &Value, valid| Case {
        name,
        key,
        message: message.to_vec(),
        signature: s(signature).to_owned(),
        valid,
    };
    let mut cases = Vec::new();
    for (i, sig) in v["highSSignatures"].as_array().unwrap().iter().enumerate() {
        cases.push(case(
            format!("highS[{i}]"),
            vector_key,
            &message,
            &sig["signatureBase64"],
            true,
        ));
        cases.push(case(
            format!("highS[{i}] low-S twin"),
            vector_key,
            &message,
            &sig["lowSEquivalentBase64"],
            true,
        ));
    }
    for (i, sig) in v["lowSSignatures"].as_array().unwrap().iter().enumerate() {
        cases.push(case(
            format!("lowS[{i}]"),
            vector_key,
            &message,
            &sig["signatureBase64"],
            true,
        ));
    }
    cases.push(case(
        "shortSecretKey".into(),
        short_key,
        s(&short["message"]).as_bytes(),
        &short["signatureBase64"],
        true,
    ));
    for name in ["starkWebhookVector", "starkWebhookVector2"] {
        let w = &v[name];
        let content = s(&w["content"]).as_bytes();
        cases.push(case(
            format!("{name} high-S"),
            stark,
            content,
            &w["digitalSignature"],
            true,
        ));
        cases.push(case(
            format!("{name} low-S"),
            stark,
            content,
            &w["digitalSignatureLowS"],
            true,
        ));
    }
    let w = &v["starkWebhookVector"];
    let content = s(&w["content"]).as_bytes();
    cases.push(case(
        "invalid".into(),
        stark,
        content,
        &w["invalidSignature"],
        false,
    ));
    cases.push(case(
        "malformed".into(),
        stark,
        content,
        &w["malformedSignature"],
        false,
    ));

    let valid: Vec<(String, PublicKey, Vec<u8>, String)> = cases
        .iter()
        .filter(|c| c.valid)
        .map(|c| {
            (
                c.name.clone(),
                c.key,
                c.message.clone(),
                c.signature.clone(),
            )
        })
        .collect();
    for (name, key, message, signature) in valid {
        let mut tampered = message.clone();
        *tampered.last_mut().unwrap() ^= 1;
        cases.push(Case {
            name: format!("{name}, tampered"),
            key,
            message: tampered,
            signature: signature.clone(),
            valid: false,
        });
        let wrong = if key == stark { vector_key } else { stark };
        cases.push(Case {
            name: format!("{name}, wrong key"),
            key: wrong,
            message,
            signature,
            valid: false,
        });
    }
    cases
}

/// k256 alone: base64, strict DER, normalize S, verify.
fn k256_verdict(case: &Case) -> (bool, bool) {
    let Ok(der) = B64.decode(&case.signature) else {
        return (false, false);
    };
    let Ok(signature) = k256::ecdsa::Signature::from_der(&der) else {
        return (false, false);
    };
    let normalized = signature.normalize_s().unwrap_or(signature);
    let valid = k256::ecdsa::signature::Verifier::verify(
        case.key.as_verifying_key(),
        &case.message,
        &normalized,
    )
    .is_ok();
    (true, valid)
}

/// libsecp256k1 alone: base64, its own DER parser, normalize S, verify over SHA-256.
fn libsecp256k1_verdict(case: &Case) -> (bool, bool) {
    let Ok(der) = B64.decode(&case.signature) else {
        return (false, false);
    };
    let Ok(mut signature) = secp256k1::ecdsa::Signature::from_der(&der) else {
        return (false, false);
    };
    signature.normalize_s();
    let point = case.key.as_verifying_key().to_encoded_point(false);
    let key = secp256k1::PublicKey::from_slice(point.as_bytes()).unwrap();
    let digest = secp256k1::Message::from_digest(Sha256::digest(&case.message).into());
    (
        true,
        secp256k1::ecdsa::verify(&signature, digest, &key).is_ok(),
    )
}

#[test]
fn every_signature_fixture_gets_the_same_verdict_from_k256_and_libsecp256k1() {
    let cases = every_signature_fixture();
    let valid = cases.iter().filter(|c| c.valid).count();
    // 6 high-S + 6 twins + 7 low-S + 1 short-secret + 2 × 2 Stark webhooks.
    assert_eq!(valid, 24);
    assert_eq!(
        cases.len(),
        valid * 3 + 2,
        "each valid one tampered and misattributed"
    );
    for case in &cases {
        let (k256_parsed, k256_valid) = k256_verdict(case);
        let (secp_parsed, secp_valid) = libsecp256k1_verdict(case);
        let ours = case.key.verify_base64(&case.message, &case.signature);
        assert_eq!(
            k256_parsed, secp_parsed,
            "{}: the DER parsers disagree",
            case.name
        );
        assert_eq!(k256_valid, case.valid, "{}: k256", case.name);
        assert_eq!(secp_valid, case.valid, "{}: libsecp256k1", case.name);
        assert_eq!(
            ours.is_ok(),
            case.valid,
            "{}: PublicKey::verify_base64 {ours:?}",
            case.name
        );
        if let Ok(signature) = parse_signature(&case.signature) {
            assert_eq!(
                case.key.verify_with_k256(&case.message, &signature).is_ok(),
                case.valid,
                "{}: PublicKey::verify_with_k256",
                case.name
            );
        }
    }
    assert!(matches!(
        cases
            .iter()
            .find(|c| c.name == "malformed")
            .map(|c| c.key.verify_base64(&c.message, &c.signature)),
        Some(Err(SignatureError::Malformed(_)))
    ));
}

#[test]
fn both_libraries_sign_the_same_rfc6979_low_s_signature() {
    // Deterministic nonces (RFC 6979) and low-S on both sides: the same key and message give
    // byte-identical signatures, so the choice of signer can never change what Stark sees.
    let v = vectors();
    let pem = s(&v["privateKeyPem"]);
    let key = PrivateKey::from_pem(pem).unwrap();
    let secret = k256::SecretKey::from_sec1_pem(pem.trim()).unwrap();
    let secp_secret = secp256k1::SecretKey::from_secret_bytes(secret.to_bytes().into()).unwrap();
    for message in [s(&v["message"]), "", "{\"invoices\": []}"] {
        let digest = secp256k1::Message::from_digest(Sha256::digest(message).into());
        let theirs = secp256k1::ecdsa::sign(digest, &secp_secret);
        let ours = key.sign(message.as_bytes());
        assert!(ours.normalize_s().is_none(), "k256 signs low-S");
        assert_eq!(
            key.sign_base64(message.as_bytes()),
            B64.encode(theirs.serialize_der()),
            "{message:?}"
        );
        assert_eq!(ours.to_bytes()[..], theirs.serialize_compact()[..]);
    }
}

/// Re-encodes `der` (a valid `SEQUENCE { INTEGER r, INTEGER s }`) with one flaw.
fn flawed_der(der: &[u8], flaw: &str) -> Vec<u8> {
    let (r, s) = {
        assert_eq!(der[0], 0x30);
        let r_len = der[3] as usize;
        let r = der[4..4 + r_len].to_vec();
        let s_len = der[5 + r_len] as usize;
        (r, der[6 + r_len..6 + r_len + s_len].to_vec())
    };
    let int = |v: &[u8]| [&[0x02, v.len() as u8][..], v].concat();
    let seq = |body: Vec<u8>| [&[0x30, body.len() as u8][..], &body].concat();
    let n = hex("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141");
    match flaw {
        "long-form length" => {
            let body = [int(&r), int(&s)].concat();
            [&[0x30, 0x81, body.len() as u8][..], &body].concat()
        }
        "padded integer" => seq([int(&[&[0][..], &r].concat()), int(&s)].concat()),
        "trailing byte" => [seq([int(&r), int(&s)].concat()), vec![0]].concat(),
        "negative integer" => {
            assert_eq!(r[0], 0, "the fixture's r needs its sign byte");
            seq([int(&r[1..]), int(&s)].concat())
        }
        "r is zero" => seq([int(&[0]), int(&s)].concat()),
        "s is n" => seq([int(&r), int(&[&[0][..], &n].concat())].concat()),
        other => panic!("unknown flaw {other}"),
    }
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn non_canonical_der_and_base64_are_malformed() {
    let v = vectors();
    let w = &v["starkWebhookVector"];
    let stark = PublicKey::from_pem(s(&w["starkPublicKeyPem"])).unwrap();
    let content = s(&w["content"]).as_bytes();
    // This one's r has its high bit set, hence a sign byte: every flaw below applies to it.
    let der = B64.decode(s(&w["invalidSignature"])).unwrap();
    // Encoding flaws: both DER parsers refuse them.
    for flaw in ["long-form length", "padded integer", "trailing byte"] {
        let bad = flawed_der(&der, flaw);
        assert!(
            k256::ecdsa::Signature::from_der(&bad).is_err(),
            "{flaw}: k256"
        );
        assert!(
            secp256k1::ecdsa::Signature::from_der(&bad).is_err(),
            "{flaw}: libsecp256k1"
        );
        let result = stark.verify_base64(content, &B64.encode(&bad));
        assert!(
            matches!(result, Err(SignatureError::Malformed(_))),
            "{flaw}: {result:?}"
        );
    }
    // Value flaws: libsecp256k1 parses them into a signature that can never verify; k256 (which
    // we parse with) refuses them outright, so they are malformed, answered without I/O, not a
    // mismatch that would cost a key refresh.
    for flaw in ["negative integer", "r is zero", "s is n"] {
        let bad = flawed_der(&der, flaw);
        assert!(
            k256::ecdsa::Signature::from_der(&bad).is_err(),
            "{flaw}: k256"
        );
        let mut parsed = secp256k1::ecdsa::Signature::from_der(&bad)
            .unwrap_or_else(|_| panic!("{flaw}: libsecp256k1 parses it"));
        parsed.normalize_s();
        let point = stark.as_verifying_key().to_encoded_point(false);
        let key = secp256k1::PublicKey::from_slice(point.as_bytes()).unwrap();
        let digest = secp256k1::Message::from_digest(Sha256::digest(content).into());
        assert!(
            secp256k1::ecdsa::verify(&parsed, digest, &key).is_err(),
            "{flaw}"
        );
        let result = stark.verify_base64(content, &B64.encode(&bad));
        assert!(
            matches!(result, Err(SignatureError::Malformed(_))),
            "{flaw}: {result:?}"
        );
    }
    // Base64 must be standard and padded.
    let valid = s(&w["digitalSignature"]);
    stark.verify_base64(content, valid).unwrap();
    let unpadded = valid.trim_end_matches('=');
    let url_safe = base64::engine::general_purpose::URL_SAFE.encode(B64.decode(valid).unwrap());
    assert_ne!(url_safe, valid);
    for bad in [unpadded, url_safe.as_str()] {
        assert!(
            matches!(
                stark.verify_base64(content, bad),
                Err(SignatureError::Malformed(_))
            ),
            "{bad}"
        );
    }
}
