//! Lint `iam-policy`: every resource and data source type of the template
//! has its AWS actions in `template::iam::TYPES`, and `docs/aws-setup.md`
//! shows exactly the policy generated from them (what an administrator
//! grants Coder's provisioner).

use std::path::Path;

use super::Finding;
use crate::template::iam;

pub const CHECK: &str = "iam-policy";

pub fn check(root: &Path) -> Vec<Finding> {
    let mut out = vec![];
    match iam::unmapped(root) {
        Err(e) => out.push(Finding::new(
            CHECK,
            root.join("templates"),
            None,
            format!("{e:#}"),
        )),
        Ok(missing) => {
            for (kind, name, file) in missing {
                out.push(Finding::new(
                    CHECK,
                    file,
                    Some(&format!("{} \"{name}\"", kind.block())),
                    "no AWS actions listed for this type in harness/src/template/iam.rs (TYPES): the provisioner's policy would not cover it",
                ));
            }
        }
    }
    let doc = root.join(iam::DOC);
    let want = match iam::policy_json(root) {
        Ok(p) => p,
        Err(e) => {
            out.push(Finding::new(CHECK, &doc, None, format!("{e:#}")));
            return out;
        }
    };
    match std::fs::read_to_string(&doc) {
        Err(e) => out.push(Finding::new(
            CHECK,
            &doc,
            None,
            format!("cannot read ({e}): it must show the provisioner's IAM policy (`harness policy`) after `{}`", iam::DOC_MARKER),
        )),
        Ok(text) => match iam::documented_policy(&text) {
            None => out.push(Finding::new(
                CHECK,
                &doc,
                Some("provisioner-policy"),
                format!("expected `{}` followed by a ```json block with the output of `harness policy`", iam::DOC_MARKER),
            )),
            Some(block) if block != want => out.push(Finding::new(
                CHECK,
                &doc,
                Some("provisioner-policy"),
                "the documented policy differs from the one generated from the template: paste `cargo run -p harness -- policy`",
            )),
            Some(_) => {}
        },
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_stale_policy_and_an_unmapped_type_fail() {
        let d = tempfile::tempdir().unwrap();
        let root = crate::repo::root().unwrap();
        crate::template::terraform::copy_tree(&root.join("templates"), &d.path().join("templates"))
            .unwrap();
        // No docs at all (the template before this check).
        let f = check(d.path());
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].message.contains("cannot read"), "{f:?}");
        // The shipped docs: clean.
        std::fs::create_dir_all(d.path().join("docs")).unwrap();
        std::fs::copy(root.join(iam::DOC), d.path().join(iam::DOC)).unwrap();
        assert!(check(d.path()).is_empty(), "{:?}", check(d.path()));
        // A type without actions: named, and the documented policy is stale too.
        std::fs::write(
            d.path().join("templates/modules/ec2-instance/eip.tf"),
            "resource \"aws_eip\" \"x\" {\n  domain = \"vpc\"\n}\n",
        )
        .unwrap();
        let keys: Vec<_> = check(d.path()).into_iter().filter_map(|f| f.key).collect();
        assert_eq!(keys, ["resource \"aws_eip\""], "{keys:?}");
        // A documented policy that lost an action.
        std::fs::remove_file(d.path().join("templates/modules/ec2-instance/eip.tf")).unwrap();
        let text = std::fs::read_to_string(d.path().join(iam::DOC)).unwrap();
        std::fs::write(
            d.path().join(iam::DOC),
            text.replacen("        \"ec2:RunInstances\",\n", "", 1),
        )
        .unwrap();
        let f = check(d.path());
        assert!(f.len() == 1 && f[0].message.contains("differs"), "{f:?}");
    }
}
