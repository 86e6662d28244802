//! Unit tests of the emulated IMDS against a real bound server (reqwest).

use std::path::Path;
use std::time::{Duration, SystemTime};

use super::*;

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn url(h: &ImdsHandle, p: &str) -> String {
    format!("http://{}{p}", h.addr())
}

async fn token(h: &ImdsHandle, ttl: &str) -> reqwest::Response {
    client()
        .put(url(h, "/latest/api/token"))
        .header("X-aws-ec2-metadata-token-ttl-seconds", ttl)
        .send()
        .await
        .unwrap()
}

async fn get(h: &ImdsHandle, p: &str, tok: Option<&str>) -> (u16, String) {
    let mut r = client().get(url(h, p));
    if let Some(t) = tok {
        r = r.header("X-aws-ec2-metadata-token", t);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn cfg() -> ImdsConfig {
    let mut c = ImdsConfig::example("i-0test");
    c.public_key = Some("ssh-ed25519 AAAAtest harness".into());
    c
}

#[tokio::test]
async fn token_ttl_bounds_and_expiry() {
    let h = ImdsServer::start(cfg(), None).unwrap();
    for bad in ["0", "21601", "abc", "-1"] {
        assert_eq!(token(&h, bad).await.status().as_u16(), 400, "ttl {bad}");
    }
    let missing = client()
        .put(url(&h, "/latest/api/token"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 400);
    let ok = token(&h, "21600").await;
    assert_eq!(ok.status().as_u16(), 200);
    assert_eq!(
        ok.headers()["x-aws-ec2-metadata-token-ttl-seconds"],
        "21600"
    );
    let long = ok.text().await.unwrap();
    // GET on the token path is not allowed.
    assert_eq!(get(&h, "/latest/api/token", None).await.0, 405);

    let short = token(&h, "1").await.text().await.unwrap();
    assert_eq!(
        get(&h, "/latest/meta-data/instance-id", Some(&short))
            .await
            .0,
        200
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        get(&h, "/latest/meta-data/instance-id", Some(&short))
            .await
            .0,
        401
    );
    assert_eq!(
        get(&h, "/latest/meta-data/instance-id", Some(&long)).await,
        (200, "i-0test".to_string())
    );
}

#[tokio::test]
async fn v2_required_rejects_missing_and_bad_tokens() {
    let h = ImdsServer::start(cfg(), None).unwrap();
    assert_eq!(get(&h, "/latest/meta-data/instance-id", None).await.0, 401);
    assert_eq!(
        get(&h, "/latest/meta-data/instance-id", Some("bogus"))
            .await
            .0,
        401
    );
    let t = token(&h, "60").await.text().await.unwrap();
    assert_eq!(
        get(&h, "/latest/meta-data/instance-id", Some(&t)).await,
        (200, "i-0test".into())
    );
}

#[tokio::test]
async fn v1_allowed_when_optional_but_bad_token_still_rejected() {
    let mut c = cfg();
    c.require_v2 = false;
    let h = ImdsServer::start(c, None).unwrap();
    assert_eq!(
        get(&h, "/latest/meta-data/instance-type", None).await,
        (200, "t3.medium".into())
    );
    assert_eq!(
        get(&h, "/latest/meta-data/instance-type", Some("bogus"))
            .await
            .0,
        401
    );
}

#[tokio::test]
async fn both_prefixes_and_fields() {
    let mut c = cfg();
    c.require_v2 = false;
    c.life_cycle = LifeCycle::Spot;
    c.arch = Arch::Aarch64;
    let h = ImdsServer::start(c, None).unwrap();
    for pre in ["/latest", "/1.0"] {
        let g = |p: &str| format!("{pre}/meta-data/{p}");
        assert_eq!(get(&h, &g("instance-id"), None).await.1, "i-0test");
        assert_eq!(get(&h, &g("ami-id"), None).await.1, "ami-0123456789abcdef0");
        assert_eq!(get(&h, &g("local-ipv4"), None).await.1, "10.0.2.15");
        assert_eq!(
            get(&h, &g("hostname"), None).await.1,
            "ip-10-0-2-15.ec2.internal"
        );
        assert_eq!(
            get(&h, &g("local-hostname"), None).await.1,
            "ip-10-0-2-15.ec2.internal"
        );
        assert_eq!(
            get(&h, &g("placement/availability-zone"), None).await.1,
            "us-east-1a"
        );
        assert_eq!(get(&h, &g("placement/region"), None).await.1, "us-east-1");
        assert_eq!(get(&h, &g("instance-life-cycle"), None).await.1, "spot");
        assert_eq!(
            get(&h, &g("public-keys/0/openssh-key"), None).await.1,
            "ssh-ed25519 AAAAtest harness"
        );
        assert_eq!(get(&h, &g("no-such-thing"), None).await.0, 404);
    }
    assert_eq!(get(&h, "/2.0/meta-data/instance-id", None).await.0, 404);
    assert_eq!(get(&h, "/latestx/meta-data/instance-id", None).await.0, 404);
}

#[tokio::test]
async fn listings_like_ec2() {
    let mut c = cfg();
    c.require_v2 = false;
    let h = ImdsServer::start(c, None).unwrap();
    let (s, body) = get(&h, "/latest/meta-data/", None).await;
    assert_eq!(s, 200);
    let lines: Vec<&str> = body.lines().collect();
    for want in [
        "instance-id",
        "ami-id",
        "placement/",
        "public-keys/",
        "local-ipv4",
    ] {
        assert!(lines.contains(&want), "{want} missing from {lines:?}");
    }
    assert!(
        !lines.contains(&"spot/"),
        "spot/ listed before a notice: {lines:?}"
    );
    // Without trailing slash too.
    assert_eq!(get(&h, "/latest/meta-data", None).await.1, body);
    assert_eq!(
        get(&h, "/latest/meta-data/public-keys/", None).await.1,
        "0=harness"
    );
    assert_eq!(
        get(&h, "/latest/meta-data/placement/", None).await.1,
        "availability-zone\nregion"
    );
    assert_eq!(
        get(&h, "/latest/", None).await.1,
        "dynamic\nmeta-data\nuser-data"
    );
    assert_eq!(
        get(&h, "/latest/dynamic/instance-identity/", None).await.1,
        "document\npkcs7\nsignature"
    );
    // No key → no public-keys.
    h.set_public_key(None);
    assert_eq!(get(&h, "/latest/meta-data/public-keys/", None).await.0, 404);
    assert!(!get(&h, "/latest/meta-data/", None)
        .await
        .1
        .contains("public-keys/"));
}

#[tokio::test]
async fn user_data_404_when_empty_then_served() {
    let mut c = cfg();
    c.require_v2 = false;
    let h = ImdsServer::start(c, None).unwrap();
    assert_eq!(get(&h, "/latest/user-data", None).await.0, 404);
    h.set_user_data(b"#!/bin/sh\necho hi\n".to_vec());
    assert_eq!(
        get(&h, "/latest/user-data", None).await,
        (200, "#!/bin/sh\necho hi\n".into())
    );
}

#[tokio::test]
async fn spot_notice_404_then_200_then_cleared() {
    let mut c = cfg();
    c.require_v2 = false;
    c.life_cycle = LifeCycle::Spot;
    let h = ImdsServer::start(c, None).unwrap();
    let p = "/latest/meta-data/spot/instance-action";
    assert_eq!(get(&h, p, None).await.0, 404);
    assert_eq!(
        get(&h, "/latest/meta-data/spot/termination-time", None)
            .await
            .0,
        404
    );
    assert!(h
        .trigger_spot_interruption("reboot", SystemTime::now())
        .is_err());
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
    h.trigger_spot_interruption("stop", at).unwrap();
    let (s, body) = get(&h, p, None).await;
    assert_eq!(s, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["action"], "stop");
    assert_eq!(v["time"], rfc3339(at));
    assert!(v["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        get(&h, "/latest/meta-data/spot/termination-time", None)
            .await
            .1,
        rfc3339(at)
    );
    assert!(get(&h, "/latest/meta-data/", None)
        .await
        .1
        .contains("spot/"));
    h.clear_spot_interruption();
    assert_eq!(get(&h, p, None).await.0, 404);
}

#[tokio::test]
async fn identity_document_shape_and_the_test_doubles_signature() {
    let mut c = cfg();
    c.arch = Arch::Aarch64;
    let h = ImdsServer::start(c, None).unwrap();
    let t = token(&h, "60").await.text().await.unwrap();
    let (s, body) = get(&h, "/latest/dynamic/instance-identity/document", Some(&t)).await;
    assert_eq!(s, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["accountId"], "123456789012");
    assert_eq!(v["architecture"], "aarch64");
    assert_eq!(v["availabilityZone"], "us-east-1a");
    assert_eq!(v["imageId"], "ami-0123456789abcdef0");
    assert_eq!(v["instanceId"], "i-0test");
    assert_eq!(v["instanceType"], "t3.medium");
    assert_eq!(v["privateIp"], "10.0.2.15");
    assert_eq!(v["region"], "us-east-1");
    assert_eq!(v["version"], "2017-09-30");
    assert!(v["pendingTime"].as_str().unwrap().ends_with('Z'));
    let (s, b) = get(&h, "/latest/dynamic/instance-identity/pkcs7", Some(&t)).await;
    assert_eq!(s, 200);
    assert!(b.contains("NOT-AWS-SIGNED"), "pkcs7: {b}");
    // `signature`: the document signed by the test double's key (what the
    // agent API double trusts), over the exact bytes served.
    let (s, sig) = get(&h, "/latest/dynamic/instance-identity/signature", Some(&t)).await;
    assert_eq!(s, 200);
    let key = identity::test_signer().unwrap().public_key();
    identity::verify(&key, body.as_bytes(), &sig).unwrap();
    assert!(
        !body.ends_with('\n'),
        "AWS's document has no trailing newline"
    );
    // Another instance's document does not carry this signature.
    let mut other = cfg();
    other.instance_id = "i-0other".into();
    let h2 = ImdsServer::start(other, None).unwrap();
    let t2 = token(&h2, "60").await.text().await.unwrap();
    let (_, body2) = get(&h2, "/latest/dynamic/instance-identity/document", Some(&t2)).await;
    assert!(identity::verify(&key, body2.as_bytes(), &sig).is_err());
    // IMDSv2 required: no token, no signature.
    assert_eq!(
        get(&h, "/latest/dynamic/instance-identity/signature", None)
            .await
            .0,
        401
    );
}

#[tokio::test]
async fn request_log_in_memory_and_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("imds.jsonl");
    let h = ImdsServer::start(cfg(), Some(log.clone())).unwrap();
    assert_eq!(h.log_path(), Some(Path::new(&log)));
    let t = token(&h, "60").await.text().await.unwrap();
    get(&h, "/latest/user-data", Some(&t)).await;
    get(&h, "/latest/meta-data/instance-id", None).await;
    get(&h, "/latest/meta-data/instance-id", Some("bad")).await;
    let r = h.requests();
    let seen: Vec<(&str, &str, bool, bool, u16)> = r
        .iter()
        .map(|r| {
            (
                r.method.as_str(),
                r.path.as_str(),
                r.token_header_present,
                r.had_valid_token,
                r.status,
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("PUT", "/latest/api/token", false, false, 200),
            ("GET", "/latest/user-data", true, true, 404),
            ("GET", "/latest/meta-data/instance-id", false, false, 401),
            ("GET", "/latest/meta-data/instance-id", true, false, 401),
        ]
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["method"], "PUT");
    assert_eq!(lines[1]["had_valid_token"], true);
    assert_eq!(lines[3]["status"], 401);
    assert!(lines[0]["time"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let h = ImdsServer::start(cfg(), None).unwrap();
    let addr = h.addr();
    let c = h.clone();
    drop(c); // a clone going away does not stop the server
    assert_eq!(get(&h, "/latest/meta-data/instance-id", None).await.0, 401);
    h.shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[test]
fn relay_cmd_quotes_and_doubles_commas() {
    assert_eq!(
        relay_cmd(Path::new("/usr/bin/harness"), 4242),
        "cmd:'/usr/bin/harness' relay 4242"
    );
    assert_eq!(
        relay_cmd(Path::new("/a b/it's,x/harness"), 1),
        r"cmd:'/a b/it'\''s,,x/harness' relay 1"
    );
}

#[test]
fn relay_cmd_runs_under_sh() {
    // The string QEMU hands to `/bin/sh -c` (commas undoubled) must run the
    // program at a path with a space and a quote.
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("with space,and 'quote'");
    std::fs::create_dir(&sub).unwrap();
    let exe = sub.join("fake harness");
    std::fs::write(&exe, "#!/bin/sh\necho \"ran:$1:$2\"\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cmd = relay_cmd(&exe, 8080);
    let sh = cmd.strip_prefix("cmd:").unwrap().replace(",,", ",");
    let out = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(&sh)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ran:relay:8080"
    );
}
