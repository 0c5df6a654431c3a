//! Authentication: every bad token is a 401 problem with the right
//! challenge, HS256, RS256, ES256 and EdDSA keys and a JWKS (rotation, an
//! unreachable host) verify exactly their tokens, a cached token still
//! expires, and a missing or short key stops start-up with one line.
//! Scopes and the identity upstreams see are in `auth_scopes`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::{self, bearer, client, echo, gateway, key_file};
use axum::{Json, Router, routing::get};
use clap::Parser;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, jwk::Jwk};
use mcp_testkit::{JWT_SECRET, eventually, prefix, redis};
use serde_json::json;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn sign(
    alg: Algorithm,
    key: &EncodingKey,
    kid: Option<&str>,
    claims: &serde_json::Value,
) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, key).unwrap()
}

fn hs(claims: serde_json::Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
        None,
        &claims,
    )
}

fn b64(bytes: &[u8]) -> String {
    // Small base64url without padding, for hand-made tokens.
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

async fn status_and_challenge(url: &str, authorization: Option<&str>) -> (u16, String, String) {
    let mut request = client().get(url);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, challenge, content_type)
}

#[tokio::test]
async fn missing_token_is_401_with_a_bare_bearer_challenge() {
    let upstream = echo("registry").await;
    let gw = gateway(
        &redis().url(),
        &prefix(),
        &["--registry-url", &upstream.url],
    )
    .await;
    let (status, challenge, content_type) =
        status_and_challenge(&gw.at("/api/v1/registry/services"), None).await;
    assert_eq!(status, 401);
    assert_eq!(challenge, "Bearer");
    assert_eq!(content_type, "application/problem+json");
}

#[tokio::test]
async fn every_bad_token_is_401_invalid_token() {
    let upstream = echo("registry").await;
    let gw = gateway(
        &redis().url(),
        &prefix(),
        &[
            "--registry-url",
            &upstream.url,
            "--jwt-issuer",
            "mcp",
            "--jwt-audience",
            "gateway",
            "--jwt-leeway-seconds",
            "5",
        ],
    )
    .await;
    let good = json!({"sub": "alice", "scope": "admin", "iss": "mcp", "aud": "gateway", "exp": now() + 600});
    let with = |patch: serde_json::Value| {
        let mut claims = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        claims
    };
    let alg_none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(serde_json::to_string(&good).unwrap().as_bytes())
    );
    let cases = [
        ("garbage", "not-a-jwt".to_owned()),
        ("three garbage parts", "a.b.c".to_owned()),
        (
            "wrong signature",
            sign(
                Algorithm::HS256,
                &EncodingKey::from_secret(b"another-secret-entirely"),
                None,
                &good,
            ),
        ),
        ("alg none", alg_none),
        ("expired", hs(with(json!({"exp": now() - 3600})))),
        ("nbf in the future", hs(with(json!({"nbf": now() + 3600})))),
        ("wrong iss", hs(with(json!({"iss": "someone-else"})))),
        ("missing iss", hs(with(json!({"iss": null})))),
        ("wrong aud", hs(with(json!({"aud": "another-api"})))),
        ("missing exp", hs(with(json!({"exp": null})))),
    ];
    // The good token passes, so each failure below is about its one defect.
    let (status, _, _) = status_and_challenge(
        &gw.at("/api/v1/registry/services"),
        Some(&bearer(&hs(good.clone()))),
    )
    .await;
    assert_eq!(status, 200);
    for (name, token) in cases {
        let (status, challenge, content_type) =
            status_and_challenge(&gw.at("/api/v1/registry/services"), Some(&bearer(&token))).await;
        assert_eq!(status, 401, "{name}");
        assert_eq!(challenge, r#"Bearer error="invalid_token""#, "{name}");
        assert_eq!(content_type, "application/problem+json", "{name}");
    }
    // The good token has `admin`, which reads the gateway's `/metrics`.
    let metrics = client()
        .get(gw.at("/metrics"))
        .header("authorization", bearer(&hs(good.clone())))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for reason in [
        "malformed",
        "signature",
        "algorithm",
        "expired",
        "not_yet_valid",
        "issuer",
        "audience",
        "claims",
    ] {
        assert!(
            metrics.contains(&format!(
                "gateway_auth_failures_total{{reason=\"{reason}\"}}"
            )),
            "no failure counted for {reason}"
        );
    }
}

/// Verified tokens are cached; the cache must not outlive `exp` (+ leeway).
#[tokio::test]
async fn a_cached_token_still_expires() {
    let upstream = echo("registry").await;
    let gw = gateway(
        &redis().url(),
        &prefix(),
        &["--registry-url", &upstream.url, "--jwt-leeway-seconds", "0"],
    )
    .await;
    let url = gw.at("/api/v1/registry/services");
    let token = bearer(&hs(
        json!({"sub": "alice", "scope": "admin", "exp": now() + 2}),
    ));
    // Verified once, then served from the cache.
    for _ in 0..3 {
        assert_eq!(status_and_challenge(&url, Some(&token)).await.0, 200);
    }
    // `exp` is whole seconds: past it, with no leeway, within three seconds.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let (status, challenge, _) = status_and_challenge(&url, Some(&token)).await;
    assert_eq!(status, 401);
    assert_eq!(challenge, r#"Bearer error="invalid_token""#);
    // Another subject's token, unrelated to the cache entry, still passes.
    let fresh = bearer(&hs(
        json!({"sub": "bob", "scope": "admin", "exp": now() + 600}),
    ));
    assert_eq!(status_and_challenge(&url, Some(&fresh)).await.0, 200);
}

#[tokio::test]
async fn hs256_signed_with_the_rs256_public_key_is_401() {
    let upstream = echo("registry").await;
    let public_pem = std::fs::read(key_file("rsa_public.pem")).unwrap();
    let gw = gateway(
        &redis().url(),
        &prefix(),
        &[
            "--registry-url",
            &upstream.url,
            "--jwt-public-key-file",
            &key_file("rsa_public.pem"),
        ],
    )
    .await;
    let claims = json!({"sub": "mallory", "scope": "admin", "exp": now() + 600});
    let forged = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(&public_pem),
        None,
        &claims,
    );
    let (status, challenge, _) =
        status_and_challenge(&gw.at("/api/v1/registry/services"), Some(&bearer(&forged))).await;
    assert_eq!(status, 401);
    assert_eq!(challenge, r#"Bearer error="invalid_token""#);
    // While the real key works.
    let private =
        EncodingKey::from_rsa_pem(&std::fs::read(key_file("rsa_private.pem")).unwrap()).unwrap();
    let real = sign(Algorithm::RS256, &private, None, &claims);
    let (status, _, _) =
        status_and_challenge(&gw.at("/api/v1/registry/services"), Some(&bearer(&real))).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn es256_and_eddsa_public_keys_verify_their_tokens_only() {
    let upstream = echo("registry").await;
    let claims = json!({"sub": "bob", "scope": "registry:read", "exp": now() + 600});
    for (public, private, alg) in [
        ("ec_public.pem", "ec_private.pem", Algorithm::ES256),
        ("ed_public.pem", "ed_private.pem", Algorithm::EdDSA),
    ] {
        let gw = gateway(
            &redis().url(),
            &prefix(),
            &[
                "--registry-url",
                &upstream.url,
                "--jwt-public-key-file",
                &key_file(public),
            ],
        )
        .await;
        let pem = std::fs::read(key_file(private)).unwrap();
        let key = match alg {
            Algorithm::ES256 => EncodingKey::from_ec_pem(&pem).unwrap(),
            _ => EncodingKey::from_ed_pem(&pem).unwrap(),
        };
        let url = gw.at("/api/v1/registry/services");
        let (status, _, _) =
            status_and_challenge(&url, Some(&bearer(&sign(alg, &key, None, &claims)))).await;
        assert_eq!(status, 200, "{alg:?}");
        // No secret configured: HS256 is not accepted at all.
        let (status, _, _) = status_and_challenge(&url, Some(&bearer(&hs(claims.clone())))).await;
        assert_eq!(status, 401, "{alg:?} gateway took HS256");
    }
}

#[tokio::test]
async fn jwks_keys_verify_refetch_on_unknown_kid_and_survive_the_host_going_down() {
    let upstream = echo("registry").await;
    let private =
        EncodingKey::from_rsa_pem(&std::fs::read(key_file("rsa_private.pem")).unwrap()).unwrap();
    let ec_private =
        EncodingKey::from_ec_pem(&std::fs::read(key_file("ec_private.pem")).unwrap()).unwrap();
    let mut rsa_jwk = Jwk::from_encoding_key(&private, Algorithm::RS256).unwrap();
    rsa_jwk.common.key_id = Some("k1".into());
    let mut ec_jwk = Jwk::from_encoding_key(&ec_private, Algorithm::ES256).unwrap();
    ec_jwk.common.key_id = Some("k2".into());
    // The key set grows after start: k2 is the "rotated-in" key.
    let rotated = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (r, k1, k2) = (rotated.clone(), rsa_jwk.clone(), ec_jwk.clone());
    let jwks = common::upstream(Router::new().route(
        "/jwks.json",
        get(move || {
            let keys = if r.load(std::sync::atomic::Ordering::SeqCst) {
                vec![k1.clone(), k2.clone()]
            } else {
                vec![k1.clone()]
            };
            async move { Json(json!({ "keys": keys })) }
        }),
    ))
    .await;
    let gw = gateway(
        &redis().url(),
        &prefix(),
        &[
            "--registry-url",
            &upstream.url,
            "--jwt-jwks-url",
            &jwks.at("/jwks.json"),
            "--jwt-jwks-min-refetch",
            "0s",
        ],
    )
    .await;
    let url = gw.at("/api/v1/registry/services");
    let claims = json!({"sub": "carol", "scope": "admin", "exp": now() + 600});
    let t1 = sign(Algorithm::RS256, &private, Some("k1"), &claims);
    let t2 = sign(Algorithm::ES256, &ec_private, Some("k2"), &claims);
    assert_eq!(status_and_challenge(&url, Some(&bearer(&t1))).await.0, 200);
    assert_eq!(
        status_and_challenge(&url, Some(&bearer(&t2))).await.0,
        401,
        "k2 not published yet"
    );
    rotated.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        status_and_challenge(&url, Some(&bearer(&t2))).await.0,
        200,
        "unknown kid refetches"
    );
    let jwks_addr = jwks.addr;
    jwks.kill();
    // The JWKS host is gone once it takes no more connections.
    let gone = eventually(Duration::from_secs(5), || async {
        tokio::net::TcpStream::connect(jwks_addr).await.is_err()
    })
    .await;
    assert!(gone, "the JWKS host still takes connections");
    assert_eq!(
        status_and_challenge(&url, Some(&bearer(&t1))).await.0,
        200,
        "cache served"
    );
    assert_eq!(
        status_and_challenge(&url, Some(&bearer(&t2))).await.0,
        200,
        "cache served"
    );
    let unknown = sign(Algorithm::RS256, &private, Some("k9"), &claims);
    assert_eq!(
        status_and_challenge(&url, Some(&bearer(&unknown))).await.0,
        401
    );
}

#[tokio::test]
async fn a_key_removed_from_the_jwks_is_refused_within_one_refresh_cached_tokens_included() {
    let upstream = echo("registry").await;
    let private =
        EncodingKey::from_rsa_pem(&std::fs::read(key_file("rsa_private.pem")).unwrap()).unwrap();
    let ec_private =
        EncodingKey::from_ec_pem(&std::fs::read(key_file("ec_private.pem")).unwrap()).unwrap();
    let mut rsa_jwk = Jwk::from_encoding_key(&private, Algorithm::RS256).unwrap();
    rsa_jwk.common.key_id = Some("old".into());
    let mut ec_jwk = Jwk::from_encoding_key(&ec_private, Algorithm::ES256).unwrap();
    ec_jwk.common.key_id = Some("new".into());
    // The issuer withdraws `old` (a leaked key) and keeps `new`.
    let withdrawn = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (w, old, new) = (withdrawn.clone(), rsa_jwk.clone(), ec_jwk.clone());
    let jwks = common::upstream(Router::new().route(
        "/jwks.json",
        get(move || {
            let keys = if w.load(std::sync::atomic::Ordering::SeqCst) {
                vec![new.clone()]
            } else {
                vec![old.clone(), new.clone()]
            };
            async move { Json(json!({ "keys": keys })) }
        }),
    ))
    .await;
    let gw = gateway(
        &redis().url(),
        &prefix(),
        &[
            "--registry-url",
            &upstream.url,
            "--jwt-jwks-url",
            &jwks.at("/jwks.json"),
            "--jwt-jwks-refresh",
            "200ms",
            // No refetch on an unknown kid in this test: the refresh alone must do it.
            "--jwt-jwks-min-refetch",
            "1h",
        ],
    )
    .await;
    let url = gw.at("/api/v1/registry/services");
    let claims = json!({"sub": "carol", "scope": "admin", "exp": now() + 600});
    let leaked = bearer(&sign(Algorithm::RS256, &private, Some("old"), &claims));
    let kept = bearer(&sign(Algorithm::ES256, &ec_private, Some("new"), &claims));
    // Verified, then served from the verified-token cache.
    for _ in 0..2 {
        assert_eq!(status_and_challenge(&url, Some(&leaked)).await.0, 200);
        assert_eq!(status_and_challenge(&url, Some(&kept)).await.0, 200);
    }

    withdrawn.store(true, std::sync::atomic::Ordering::SeqCst);
    let refused = mcp_testkit::eventually(Duration::from_secs(3), || async {
        status_and_challenge(&url, Some(&leaked)).await.0 == 401
    })
    .await;
    assert!(refused, "a token of a withdrawn key is still accepted");
    let (status, challenge, content_type) = status_and_challenge(&url, Some(&leaked)).await;
    assert_eq!(status, 401);
    assert_eq!(challenge, r#"Bearer error="invalid_token""#);
    assert_eq!(content_type, "application/problem+json");
    // The key that stayed still verifies.
    assert_eq!(status_and_challenge(&url, Some(&kept)).await.0, 200);
}

#[tokio::test]
async fn no_key_source_stops_the_gateway_with_one_line_naming_the_settings() {
    let settings = gateway::Settings::try_parse_from([
        "gateway",
        "--redis-url",
        &redis().url(),
        "--redis-prefix",
        &prefix(),
        "--internal-secret",
        mcp_testkit::INTERNAL_SECRET,
    ])
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = gateway::run(
        settings,
        listener,
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("JWT_SECRET") && error.contains("JWT_JWKS_URL"),
        "{error}"
    );
    assert!(!error.contains('\n'));
}

#[test]
fn the_secret_is_never_printed() {
    let settings = gateway::Settings::try_parse_from([
        "gateway",
        "--jwt-secret",
        "hunter2-very-secret-hunter2-very-secret",
        "--internal-secret",
        "swordfish-internal-secret-long-enough",
    ])
    .unwrap();
    let printed = format!("{settings:?}");
    assert!(!printed.contains("hunter2"));
    assert!(!printed.contains("swordfish"));
}

#[test]
fn a_jwt_secret_under_32_bytes_is_refused_with_one_clear_line() {
    let short = "x".repeat(31);
    let error = gateway::Settings::try_parse_from(["gateway", "--jwt-secret", &short])
        .unwrap_err()
        .to_string();
    assert_eq!(error.trim_end().lines().count(), 1, "{error}");
    assert!(
        error.contains("--jwt-secret") && error.contains("JWT_SECRET"),
        "names the setting: {error}"
    );
    assert!(error.contains("at least 32 bytes, got 31"), "{error}");
    assert!(
        !error.contains(&short),
        "the value is never echoed: {error}"
    );

    let exactly = "x".repeat(32);
    assert!(gateway::Settings::try_parse_from(["gateway", "--jwt-secret", &exactly]).is_ok());
}

#[tokio::test]
async fn unknown_kids_refetch_the_jwks_at_most_once_per_min_refetch() {
    let upstream = echo("registry").await;
    let private =
        EncodingKey::from_rsa_pem(&std::fs::read(key_file("rsa_private.pem")).unwrap()).unwrap();
    let mut jwk = Jwk::from_encoding_key(&private, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some("k1".into());
    let fetches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = fetches.clone();
    let jwks = common::upstream(Router::new().route(
        "/jwks.json",
        get(move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let keys = vec![jwk.clone()];
            async move { Json(json!({ "keys": keys })) }
        }),
    ))
    .await;
    // The limit on, as in production: one refetch per hour at most.
    let gw = gateway(
        &redis().url(),
        &prefix(),
        &[
            "--registry-url",
            &upstream.url,
            "--jwt-jwks-url",
            &jwks.at("/jwks.json"),
            "--jwt-jwks-min-refetch",
            "1h",
        ],
    )
    .await;
    let url = gw.at("/api/v1/registry/services");
    let fetched = || fetches.load(std::sync::atomic::Ordering::SeqCst);
    let at_start = fetched();
    assert!(at_start >= 1, "the key set is fetched at start");
    // Someone sprays tokens with made-up key ids, twenty at once, twice.
    let claims = json!({"sub": "mallory", "scope": "admin", "exp": now() + 600});
    for wave in 0..2 {
        let statuses = futures_util::future::join_all((0..20).map(|i| {
            let token = sign(
                Algorithm::RS256,
                &private,
                Some(&format!("forged-{wave}-{i}")),
                &claims,
            );
            let url = url.clone();
            async move { status_and_challenge(&url, Some(&bearer(&token))).await.0 }
        }))
        .await;
        assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    }
    assert_eq!(
        fetched(),
        at_start + 1,
        "forty unknown kids cost the JWKS host one refetch"
    );
    // The known key still verifies, from the cache.
    let good = sign(Algorithm::RS256, &private, Some("k1"), &claims);
    assert_eq!(
        status_and_challenge(&url, Some(&bearer(&good))).await.0,
        200
    );
    assert_eq!(fetched(), at_start + 1);
}
