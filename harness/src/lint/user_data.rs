//! Lint: rendered user-data stays within EC2's limit for every variant.
//!
//! EC2 documents the limit as "16 KB, in raw form, before it is
//! base64-encoded" (the API carries ceil(n/3)*4 base64 bytes).  So the
//! check compares the raw byte length with 16384 and reports the base64
//! size alongside.

use std::collections::BTreeMap;
use std::path::Path;

use super::Finding;
use crate::template::render::{self, Rendered};

/// EC2's user-data limit, in raw bytes.
pub const LIMIT_BYTES: usize = 16 * 1024;

/// base64 length of `n` raw bytes.
pub fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

pub fn check(root: &Path, rendered: &BTreeMap<String, Rendered>) -> Vec<Finding> {
    let mut out = vec![];
    for (name, r) in rendered {
        match r.string("user_data") {
            Ok(ud) => {
                if let Some(f) = check_size(root, name, ud) {
                    out.push(f);
                }
            }
            Err(e) => out.push(Finding::new(
                "user-data-size",
                render::bootstrap_dir(root),
                Some(name),
                e.to_string(),
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
            "user-data-size",
            render::bootstrap_dir(root),
            Some(variant),
            format!(
                "rendered user-data is {n} bytes ({} base64); EC2 allows at most {LIMIT_BYTES} bytes raw",
                base64_len(n)
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
}
