//! Key pairs and token helpers for the unit tests of the `jwt` modules:
//! throwaway keys made for these tests only (they sign nothing else), so
//! the tests need no files and no key generation.

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::Value;

use super::cache::unix_now;

/// The secret the HS256 tests sign with.
pub const SECRET: &[u8] = b"unit-test-secret";

/// A P-256 private key (PKCS#8).
pub const EC_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgwzy3Wf/o+1trPoFt
sUNvuNXRKmy2WjmJ6iEdefjauX6hRANCAAS4pvBWQtSK0mS87c0zbC/bWrmuY4ZB
ioCQrqLA+m/KXgY5HhkBDtdob9zKpEyKMmvEWdKon9WbzNXOsTzPtMo6
-----END PRIVATE KEY-----
";
/// The public half of [`EC_PRIVATE`].
pub const EC_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEuKbwVkLUitJkvO3NM2wv21q5rmOG
QYqAkK6iwPpvyl4GOR4ZAQ7XaG/cyqRMijJrxFnSqJ/Vm8zVzrE8z7TKOg==
-----END PUBLIC KEY-----
";
/// [`EC_PUBLIC`]'s coordinates, as a JWK holds them.
pub const EC_X: &str = "uKbwVkLUitJkvO3NM2wv21q5rmOGQYqAkK6iwPpvyl4";
/// See [`EC_X`].
pub const EC_Y: &str = "BjkeGQEO12hv3MqkTIoya8RZ0qif1ZvM1c6xPM-0yjo";

/// An Ed25519 private key (PKCS#8).
pub const ED_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIDMw8usKEhlJ/akOVcLTbo86rgPMoCd5hvGTAwPi1MYk
-----END PRIVATE KEY-----
";
/// The public half of [`ED_PRIVATE`].
pub const ED_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAwrGwJ+odF6/ZuL8qDWgw68oNoNTsyvfFsufPUvijI3c=
-----END PUBLIC KEY-----
";
/// [`ED_PUBLIC`]'s raw key, as a JWK holds it.
pub const ED_X: &str = "wrGwJ-odF6_ZuL8qDWgw68oNoNTsyvfFsufPUvijI3c";

/// Seconds since the epoch, `offset` from now.
pub fn at(offset: i64) -> i64 {
    unix_now() as i64 + offset
}

/// `claims` signed with `algorithm` by `key`, with `kid` in the header when given.
pub fn token(algorithm: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, key).unwrap()
}

/// `claims` signed with HS256 by [`SECRET`].
pub fn hs256(claims: &Value) -> String {
    token(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET),
        None,
        claims,
    )
}

/// `claims` signed with ES256 by [`EC_PRIVATE`].
pub fn es256(kid: Option<&str>, claims: &Value) -> String {
    let key = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
    token(Algorithm::ES256, &key, kid, claims)
}

/// `claims` signed with EdDSA by [`ED_PRIVATE`].
pub fn eddsa(kid: Option<&str>, claims: &Value) -> String {
    let key = EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap();
    token(Algorithm::EdDSA, &key, kid, claims)
}
