//! Request handling of the emulated IMDS: tokens, the metadata tree, EC2-style listings.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;

use super::{rfc3339, ImdsRequest, State};

const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
const TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";

/// Placeholder served as `pkcs7`: not AWS-signed.
pub(crate) const NOT_SIGNED: &str = "NOT-AWS-SIGNED: this identity document was served by the harness's emulated IMDS; no AWS signature exists.";

/// `dynamic/instance-identity/document`: the JSON AWS serves (pretty,
/// no trailing newline), the same bytes every time for one configuration.
pub(crate) fn identity_document(cfg: &super::ImdsConfig, started: SystemTime) -> Vec<u8> {
    let doc = serde_json::json!({
        "accountId": cfg.account_id,
        "architecture": cfg.arch.as_str(),
        "availabilityZone": cfg.availability_zone,
        "billingProducts": null,
        "devpayProductCodes": null,
        "marketplaceProductCodes": null,
        "imageId": cfg.ami_id,
        "instanceId": cfg.instance_id,
        "instanceType": cfg.instance_type,
        "kernelId": null,
        "pendingTime": rfc3339(started),
        "privateIp": cfg.local_ipv4,
        "ramdiskId": null,
        "region": cfg.region,
        "version": "2017-09-30",
    });
    serde_json::to_vec_pretty(&doc).unwrap_or_default()
}

pub(crate) fn router(state: Arc<State>) -> axum::Router {
    axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap| {
        let state = state.clone();
        async move { handle(&state, method, uri, headers) }
    })
}

fn handle(state: &State, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path().to_string();
    let token = headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok());
    let token_header_present = headers.contains_key(TOKEN_HEADER);
    let had_valid_token = match token {
        Some(t) => {
            let mut tokens = state.tokens.lock().unwrap();
            let now = Instant::now();
            tokens.retain(|_, exp| *exp > now);
            tokens.contains_key(t)
        }
        None => false,
    };
    let resp = respond(
        state,
        &method,
        &path,
        &headers,
        token_header_present,
        had_valid_token,
    );
    state.record(ImdsRequest {
        method: method.to_string(),
        path,
        had_valid_token,
        token_header_present,
        status: resp.status().as_u16(),
        time: SystemTime::now(),
    });
    resp
}

fn text(status: StatusCode, body: impl Into<Body>) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(body.into())
        .unwrap()
}

fn status(s: StatusCode) -> Response {
    text(s, s.canonical_reason().unwrap_or("").to_string())
}

fn respond(
    state: &State,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    token_present: bool,
    token_valid: bool,
) -> Response {
    let rest = match path
        .strip_prefix("/latest")
        .or_else(|| path.strip_prefix("/1.0"))
    {
        Some("") => "",
        Some(r) if r.starts_with('/') => &r[1..],
        _ => return status(StatusCode::NOT_FOUND),
    };
    let rest = rest.trim_end_matches('/');
    if rest == "api/token" {
        if *method != Method::PUT {
            return status(StatusCode::METHOD_NOT_ALLOWED);
        }
        return issue_token(state, headers);
    }
    if *method != Method::GET && *method != Method::HEAD {
        return status(StatusCode::METHOD_NOT_ALLOWED);
    }
    // EC2 rejects an invalid token even when v2 is optional.
    if token_present && !token_valid {
        return status(StatusCode::UNAUTHORIZED);
    }
    if state.cfg.lock().unwrap().require_v2 && !token_valid {
        return status(StatusCode::UNAUTHORIZED);
    }
    match lookup(state, rest) {
        Some(body) => text(StatusCode::OK, body),
        None => status(StatusCode::NOT_FOUND),
    }
}

fn issue_token(state: &State, headers: &HeaderMap) -> Response {
    let ttl = headers
        .get(TTL_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let Some(ttl) = ttl.filter(|t| (1..=21600).contains(t)) else {
        return text(
            StatusCode::BAD_REQUEST,
            "X-aws-ec2-metadata-token-ttl-seconds: expected an integer in 1..=21600",
        );
    };
    let token = hex::encode(rand::random::<[u8; 24]>());
    state
        .tokens
        .lock()
        .unwrap()
        .insert(token.clone(), Instant::now() + Duration::from_secs(ttl));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/plain")
        .header(TTL_HEADER, ttl.to_string())
        .body(Body::from(token))
        .unwrap()
}

fn listing(entries: &[&str]) -> Vec<u8> {
    entries.join("\n").into_bytes()
}

/// The metadata tree below the version prefix (no leading/trailing slash).
fn lookup(state: &State, rest: &str) -> Option<Vec<u8>> {
    let cfg = state.cfg.lock().unwrap().clone();
    let spot = state.spot.lock().unwrap().clone();
    let s = |v: &str| Some(v.as_bytes().to_vec());
    match rest {
        "" => Some(listing(&["dynamic", "meta-data", "user-data"])),
        "user-data" if cfg.user_data.is_empty() => None,
        "user-data" => Some(cfg.user_data.clone()),
        "meta-data" => {
            let mut e = vec![
                "ami-id",
                "hostname",
                "instance-id",
                "instance-life-cycle",
                "instance-type",
                "local-hostname",
                "local-ipv4",
                "placement/",
            ];
            if cfg.public_key.is_some() {
                e.push("public-keys/");
            }
            if spot.is_some() {
                e.push("spot/");
            }
            Some(listing(&e))
        }
        "meta-data/ami-id" => s(&cfg.ami_id),
        "meta-data/hostname" | "meta-data/local-hostname" => s(&cfg.hostname),
        "meta-data/instance-id" => s(&cfg.instance_id),
        "meta-data/instance-life-cycle" => s(cfg.life_cycle.as_str()),
        "meta-data/instance-type" => s(&cfg.instance_type),
        "meta-data/local-ipv4" => s(&cfg.local_ipv4),
        "meta-data/placement" => Some(listing(&["availability-zone", "region"])),
        "meta-data/placement/availability-zone" => s(&cfg.availability_zone),
        "meta-data/placement/region" => s(&cfg.region),
        "meta-data/public-keys" => cfg.public_key.as_ref().map(|_| b"0=harness".to_vec()),
        "meta-data/public-keys/0" => cfg.public_key.as_ref().map(|_| b"openssh-key".to_vec()),
        "meta-data/public-keys/0/openssh-key" => cfg.public_key.map(|k| k.into_bytes()),
        "meta-data/spot" => spot.map(|_| listing(&["instance-action", "termination-time"])),
        "meta-data/spot/instance-action" => spot.map(|n| {
            serde_json::json!({"action": n.action, "time": rfc3339(n.time)})
                .to_string()
                .into_bytes()
        }),
        "meta-data/spot/termination-time" => spot.map(|n| rfc3339(n.time).into_bytes()),
        "dynamic" => Some(listing(&["instance-identity/"])),
        "dynamic/instance-identity" => Some(listing(&["document", "pkcs7", "signature"])),
        "dynamic/instance-identity/document" => Some(identity_document(&cfg, state.started)),
        // The TEST DOUBLE's signature (super::identity), not AWS's.
        "dynamic/instance-identity/signature" => super::identity::test_signer()
            .and_then(|k| k.sign(&identity_document(&cfg, state.started)))
            .map(String::into_bytes)
            .map_err(|e| tracing::warn!("emulated IMDS: {e:#}"))
            .ok(),
        "dynamic/instance-identity/pkcs7" => s(NOT_SIGNED),
        _ => None,
    }
}
