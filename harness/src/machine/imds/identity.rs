//! TEST DOUBLE of AWS's instance-identity signing: what the emulated IMDS
//! serves as `dynamic/instance-identity/signature` is the identity
//! document signed with a key made fresh in this process (RSA 2048,
//! PKCS#1 v1.5 over SHA-256, base64: the shape of AWS's `signature`
//! endpoint), and the Coder agent API double (`doubles::agent_api`)
//! trusts exactly this key, as coderd trusts AWS's public certificates
//! (coder/coder `coderd/awsidentity/awsidentity.go`: `rsa.VerifyPKCS1v15`
//! over `sha256(document)`).  Nothing signed here passes a real coderd,
//! and no AWS signature can be made here: a pass with it proves the
//! template's and the agent's instance-identity path, never AWS's.

use std::sync::OnceLock;

use anyhow::Context;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{self, KeyPair as _, UnparsedPublicKey};
use base64::Engine as _;

/// The process's test signing key (the double of AWS's signing key).
pub struct TestSigner {
    key: KeyPair,
}

impl TestSigner {
    /// `signature` of `document`: base64 of its RSA-SHA256 signature.
    pub fn sign(&self, document: &[u8]) -> anyhow::Result<String> {
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                document,
                &mut sig,
            )
            .map_err(|_| anyhow::anyhow!("the test identity key could not sign"))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(sig))
    }

    /// The public key (DER RSAPublicKey) the agent API double trusts.
    pub fn public_key(&self) -> Vec<u8> {
        self.key.public_key().as_ref().to_vec()
    }
}

/// The key, made once per process.
pub fn test_signer() -> anyhow::Result<&'static TestSigner> {
    static KEY: OnceLock<Result<TestSigner, String>> = OnceLock::new();
    KEY.get_or_init(|| {
        KeyPair::generate(KeySize::Rsa2048)
            .map(|key| TestSigner { key })
            .map_err(|e| format!("generating the test identity key: {e:?}"))
    })
    .as_ref()
    .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Whether `signature_b64` is `public_key`'s signature of `document`
/// (what coderd checks, against AWS's certificates instead).
pub fn verify(public_key: &[u8], document: &[u8], signature_b64: &str) -> anyhow::Result<()> {
    let sig = base64::engine::general_purpose::STANDARD
        .decode(signature_b64.trim())
        .context("the signature is not base64")?;
    UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, public_key)
        .verify(document, &sig)
        .map_err(|_| anyhow::anyhow!("the signature does not verify against the trusted key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies_and_refuses_a_changed_document() {
        let k = test_signer().unwrap();
        let doc = br#"{"instanceId":"i-0abc"}"#;
        let sig = k.sign(doc).unwrap();
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(&sig)
                .unwrap()
                .len(),
            256,
            "RSA 2048"
        );
        verify(&k.public_key(), doc, &sig).unwrap();
        assert!(verify(&k.public_key(), br#"{"instanceId":"i-0abd"}"#, &sig).is_err());
        assert!(verify(&k.public_key(), doc, "bm90IGEgc2lnbmF0dXJl").is_err());
        assert!(verify(&k.public_key(), doc, "%%%").is_err());
    }
}
