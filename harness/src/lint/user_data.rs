//! Lint: rendered user-data stays within EC2's limit for every variant,
//! with room to spare in the worst case.
//!
//! EC2 documents the limit as "16 KB, in raw form, before it is
//! base64-encoded" (the API carries ceil(n/3)*4 base64 bytes;
//! hashicorp/aws refuses more than 16384 characters at plan time, printing
//! the whole value). Two checks per variant:
//! - the user-data rendered with the variant's defaults is at most
//!   [`LIMIT_BYTES`];
//! - the **worst case** ([`worst_case_vars`]) is at most [`BUDGET_BYTES`],
//!   i.e. it leaves [`HEADROOM_BYTES`] under the limit: the real bootstrap
//!   module rendered by real Terraform (as `harness render` does, which the
//!   `coder-import` row proves is byte-for-byte what the template passes to
//!   the instance) with a 6 KiB generated stand-in of Coder's agent init
//!   script (Coder's own is ~3.3 KB and AGPL, never copied:
//!   [`crate::doubles::init_script::worst_case_script`]) expanded with a
//!   100-character access URL (it appears twice), a 200-character flake
//!   and a 32-character user. The old template rendered 20,080 bytes here.

use std::collections::BTreeMap;
use std::path::Path;

use super::Finding;
use crate::doubles::init_script;
use crate::template::render::{self, Rendered};
use crate::template::variant::Variant;

/// EC2's user-data limit, in raw bytes.
pub const LIMIT_BYTES: usize = 16 * 1024;
/// What the worst case must leave free under [`LIMIT_BYTES`].
pub const HEADROOM_BYTES: usize = 4 * 1024;
/// The most the worst case may render: 12,288 bytes.
pub const BUDGET_BYTES: usize = LIMIT_BYTES - HEADROOM_BYTES;

/// Lengths of the worst case's inputs.
pub const WORST_ACCESS_URL_CHARS: usize = 100;
pub const WORST_FLAKE_CHARS: usize = 200;
pub const WORST_USER_CHARS: usize = 32;

const CHECK: &str = "user-data-size";

/// base64 length of `n` raw bytes.
pub fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// A Coder access URL of exactly [`WORST_ACCESS_URL_CHARS`] characters,
/// with the trailing `/` the coder provider adds.
pub fn worst_access_url() -> String {
    let head = "https://coder.";
    let tail = ".example.com/";
    let label = "workspaces-eu-central-1-prod-";
    let mut mid = String::new();
    while head.len() + mid.len() + tail.len() < WORST_ACCESS_URL_CHARS {
        mid.push_str(label);
    }
    mid.truncate(WORST_ACCESS_URL_CHARS - head.len() - tail.len());
    let mid = mid.trim_end_matches(['-', '.']).to_string();
    let pad = WORST_ACCESS_URL_CHARS - head.len() - tail.len() - mid.len();
    format!("{head}{mid}{}{tail}", "x".repeat(pad))
}

/// A flake reference of exactly [`WORST_FLAKE_CHARS`] characters that the
/// `flake_uri` validation accepts.
pub fn worst_flake() -> String {
    let head = "git+https://git.example.com/platform-engineering/workstation-configurations.git?ref=refs/heads/main&rev=";
    let rev = "0123456789abcdef0123456789abcdef01234567";
    let attr_head = "#nixosConfigurations.";
    let used = head.len() + rev.len() + attr_head.len();
    format!(
        "{head}{rev}{attr_head}{}",
        "w".repeat(WORST_FLAKE_CHARS - used)
    )
}

/// A 32-character user name that is not reserved.
pub fn worst_user() -> String {
    let u = "workspace_owner_with_a_long_name_";
    u[..WORST_USER_CHARS].to_string()
}

/// The worst case's `--var`s for a variant whose agent authenticates
/// with `auth` (a 36-character token when `auth` is `token`).
pub fn worst_case_vars(auth: &str) -> BTreeMap<String, String> {
    let script = init_script::expand(
        &init_script::worst_case_script(init_script::WORST_CASE_BYTES),
        &worst_access_url(),
        auth,
    );
    let mut v = BTreeMap::from([
        ("init_script".to_string(), script),
        ("flake_uri".to_string(), worst_flake()),
        ("agent_user".to_string(), worst_user()),
        ("agent_auth".to_string(), auth.to_string()),
    ]);
    if auth == "token" {
        v.insert(
            "agent_token".into(),
            "6f7e1c0a-0000-4000-8000-00000000a0ff".into(),
        );
    }
    v
}

/// The variant's agent auth (its values, else the template's default).
fn auth_of(root: &Path, v: &Variant) -> String {
    render::module_inputs(root, v, &BTreeMap::new())
        .ok()
        .and_then(|i| {
            i.get("agent_auth")
                .and_then(|a| a.as_str().map(str::to_string))
        })
        .unwrap_or_else(|| "aws-instance-identity".into())
}

/// The size of `v`'s user-data in the worst case, rendered by real
/// Terraform from the bootstrap module at `root`.
pub async fn worst_case_size(root: &Path, v: &Variant) -> anyhow::Result<usize> {
    let vars = worst_case_vars(&auth_of(root, v));
    Ok(render::render_user_data(root, v, &vars).await?.len())
}

/// Both checks for every variant: the default render (already done by
/// the lint's render step) and a worst-case render with real Terraform.
pub async fn check(
    root: &Path,
    variants: &[Variant],
    rendered: &BTreeMap<String, Rendered>,
) -> Vec<Finding> {
    let mut out = vec![];
    for (name, r) in rendered {
        match r.string("user_data") {
            Ok(ud) => out.extend(check_size(root, name, ud)),
            Err(e) => out.push(Finding::new(
                CHECK,
                render::bootstrap_dir(root),
                Some(name),
                e.to_string(),
            )),
        }
    }
    for v in variants {
        match worst_case_size(root, v).await {
            Ok(n) => out.extend(check_worst_case(root, &v.name, n)),
            Err(e) => out.push(Finding::new(
                CHECK,
                render::bootstrap_dir(root),
                Some(&v.name),
                format!("rendering the worst case: {e:#}"),
            )),
        }
    }
    out
}

/// A finding when `user_data` is over the limit.
pub fn check_size(root: &Path, variant: &str, user_data: &str) -> Option<Finding> {
    let n = user_data.len();
    (n > LIMIT_BYTES).then(|| {
        Finding::new(
            CHECK,
            render::bootstrap_dir(root),
            Some(variant),
            format!(
                "rendered user-data is {n} bytes ({} base64); EC2 allows at most {LIMIT_BYTES} bytes raw",
                base64_len(n)
            ),
        )
    })
}

/// A finding when the worst case leaves less than [`HEADROOM_BYTES`].
pub fn check_worst_case(root: &Path, variant: &str, n: usize) -> Option<Finding> {
    (n > BUDGET_BYTES).then(|| {
        Finding::new(
            CHECK,
            render::bootstrap_dir(root),
            Some(variant),
            format!(
                "the worst case renders {n} bytes of user-data (a {} KiB agent init script with a {WORST_ACCESS_URL_CHARS}-character access URL twice, a {WORST_FLAKE_CHARS}-character flake, a {WORST_USER_CHARS}-character user): expected at most {BUDGET_BYTES}, i.e. {HEADROOM_BYTES} bytes of headroom under EC2's {LIMIT_BYTES}",
                init_script::WORST_CASE_BYTES / 1024
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_is_enforced_on_raw_bytes() {
        let root = Path::new("/r");
        assert!(check_size(root, "v", &"a".repeat(LIMIT_BYTES)).is_none());
        let f = check_size(root, "v", &"a".repeat(LIMIT_BYTES + 1)).unwrap();
        assert!(
            f.message.contains("16385 bytes") && f.key.as_deref() == Some("v"),
            "{f}"
        );
        assert_eq!(base64_len(16384), 21848);
    }

    #[test]
    fn the_worst_case_needs_4_kib_of_headroom() {
        let root = Path::new("/r");
        assert_eq!(BUDGET_BYTES, 12288);
        assert!(check_worst_case(root, "v", 12288).is_none());
        let f = check_worst_case(root, "v", 12289).unwrap();
        assert!(
            f.message.contains("12289 bytes") && f.message.contains("at most 12288"),
            "{f}"
        );
    }

    #[test]
    fn the_worst_case_inputs_have_the_lengths_asked_for_and_are_valid() {
        let url = worst_access_url();
        assert_eq!(url.len(), WORST_ACCESS_URL_CHARS, "{url}");
        assert!(url.starts_with("https://") && url.ends_with('/'), "{url}");
        let flake = worst_flake();
        assert_eq!(flake.len(), WORST_FLAKE_CHARS, "{flake}");
        // The flake_uri parameter's and the bootstrap module's regex.
        let re =
            regex::Regex::new("^$|^[A-Za-z][A-Za-z0-9+.-]*:[A-Za-z0-9._~/:@%+=?&#-]+$").unwrap();
        assert!(re.is_match(&flake), "{flake}");
        let user = worst_user();
        assert_eq!(user.len(), WORST_USER_CHARS);
        assert!(crate::lint::agent_user::is_allowed(&user), "{user}");
        let vars = worst_case_vars("aws-instance-identity");
        let script = &vars["init_script"];
        assert_eq!(script.matches(url.as_str()).count(), 2);
        assert!(
            script.len() > init_script::WORST_CASE_BYTES,
            "{}",
            script.len()
        );
        assert!(!vars.contains_key("agent_token"));
        assert_eq!(worst_case_vars("token")["agent_token"].len(), 36);
    }
}
