//! The IAM policy the EC2 tier needs, generated from one list: every AWS
//! API the harness calls (`harness/src/machine/ec2/`, `template/ami.rs`,
//! `machine/backend.rs`, `workspace/real.rs`; EC2 and AWS FIS) and the
//! actions AWS authorizes implicitly (tagging on create, passing the FIS
//! role).  The harness creates no instance of its own: what the template
//! calls is the provisioner's policy ([`crate::template::iam`],
//! docs/aws-setup.md), which the run's credentials need too because
//! Coder's provisioner builds with them; the twin fails when a build sends
//! an action neither allows ([`not_allowed`]).  A test scans those sources for SDK calls and fails on any
//! call missing here and on any listed call no longer made; another checks
//! that docs/ec2.md's policy block is exactly [`policy_json`].

/// Why an action is in the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// The SDK operation (snake_case, as called on the client) that needs it.
    Call(&'static str),
    /// Authorized although not called directly; the reason.
    Implied(&'static str),
}

/// The actions of `called` (a twin build's call log, EC2 and IAM action
/// names without service) that neither this policy nor the template's
/// provisioner policy ([`crate::template::iam::actions`], docs/aws-setup.md)
/// allows: the ec2 tier's credentials need both, since Coder's provisioner
/// builds with them (`control::coder::aws_handoff`).
pub fn not_allowed<'a>(
    root: &std::path::Path,
    called: impl IntoIterator<Item = &'a str>,
) -> anyhow::Result<Vec<String>> {
    let template = crate::template::iam::actions(root)?;
    let allowed = |a: &str| {
        ["ec2", "iam"].iter().any(|svc| {
            let full = format!("{svc}:{a}");
            template.contains(full.as_str()) || ACTIONS.iter().any(|(x, _)| *x == full)
        })
    };
    let mut v: Vec<String> = called
        .into_iter()
        .filter(|a| !allowed(a))
        .map(str::to_string)
        .collect();
    v.sort();
    v.dedup();
    Ok(v)
}

/// Every action the harness needs, sorted by action.
pub const ACTIONS: &[(&str, Need)] = &[
    ("ec2:CancelSpotInstanceRequests", Need::Call("cancel_spot_instance_requests")),
    ("ec2:DeleteKeyPair", Need::Call("delete_key_pair")),
    ("ec2:DeleteSecurityGroup", Need::Call("delete_security_group")),
    ("ec2:DeleteVolume", Need::Call("delete_volume")),
    ("ec2:DescribeInstanceAttribute", Need::Call("describe_instance_attribute")),
    ("ec2:DescribeInstances", Need::Call("describe_instances")),
    ("ec2:DescribeKeyPairs", Need::Call("describe_key_pairs")),
    ("ec2:DescribeRegions", Need::Call("describe_regions")),
    ("ec2:DescribeSecurityGroups", Need::Call("describe_security_groups")),
    ("ec2:DescribeSpotInstanceRequests", Need::Call("describe_spot_instance_requests")),
    ("ec2:DescribeVolumes", Need::Call("describe_volumes")),
    ("ec2:DetachVolume", Need::Call("detach_volume")),
    ("ec2:GetConsoleOutput", Need::Call("get_console_output")),
    ("ec2:StartInstances", Need::Call("start_instances")),
    ("ec2:TerminateInstances", Need::Call("terminate_instances")),
    // AWS FIS, for the real spot interruption (`interrupt.rs`).
    (
        "fis:CreateExperimentTemplate",
        Need::Call("create_experiment_template"),
    ),
    (
        "fis:DeleteExperimentTemplate",
        Need::Call("delete_experiment_template"),
    ),
    ("fis:GetExperiment", Need::Call("get_experiment")),
    (
        "fis:ListExperimentTemplates",
        Need::Call("list_experiment_templates"),
    ),
    ("fis:StartExperiment", Need::Call("start_experiment")),
    ("fis:StopExperiment", Need::Call("stop_experiment")),
    (
        "fis:TagResource",
        Need::Implied("tags on CreateExperimentTemplate and StartExperiment (tag on create)"),
    ),
    (
        "iam:CreateServiceLinkedRole",
        Need::Implied("in a fresh account the first spot launch creates AWSServiceRoleForEC2Spot and the first FIS experiment AWSServiceRoleForFIS, as the caller (only for those two services: see policy_json)"),
    ),
    (
        "iam:PassRole",
        Need::Implied("CreateExperimentTemplate passes HARNESS_FIS_ROLE_ARN to FIS (only to fis.amazonaws.com: see policy_json)"),
    ),
];

/// The service principal `iam:PassRole` is limited to.
pub const PASS_ROLE_TO: &str = "fis.amazonaws.com";

/// The services whose service-linked role the caller may create
/// (`iam:CreateServiceLinkedRole`, condition `iam:AWSServiceName`): EC2 Spot
/// (`AWSServiceRoleForEC2Spot`, created by the first spot request in an
/// account; without it RunInstances fails with
/// `AuthFailure.ServiceLinkedRoleCreationNotPermitted`, EC2 user guide,
/// "Service-linked role for Spot Instance requests") and AWS FIS
/// (`AWSServiceRoleForFIS`, created by the first experiment; FIS user guide,
/// "Use service-linked roles for AWS FIS").  Once both exist (any earlier
/// spot launch or experiment in the account), the permission is unused.
pub const SERVICE_LINKED_ROLES: &[&str] = &["fis.amazonaws.com", "spot.amazonaws.com"];

/// The SDK waiters the harness uses and the operation each polls.
pub const WAITERS: &[(&str, &str)] = &[
    ("wait_until_instance_running", "describe_instances"),
    ("wait_until_instance_stopped", "describe_instances"),
    ("wait_until_instance_terminated", "describe_instances"),
    ("wait_until_volume_available", "describe_volumes"),
    ("wait_until_volume_in_use", "describe_volumes"),
];

/// The policy document (pretty JSON, one action per line).  `iam:*`
/// actions get their own statements, each limited by a condition: the FIS
/// role may be passed to FIS only, and service-linked roles may be created
/// for [`SERVICE_LINKED_ROLES`] only.
pub fn policy_json() -> String {
    let actions: Vec<&str> = ACTIONS
        .iter()
        .map(|(a, _)| *a)
        .filter(|a| !a.starts_with("iam:"))
        .collect();
    let doc = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": actions,
            "Resource": "*",
        }, {
            "Effect": "Allow",
            "Action": ["iam:PassRole"],
            "Resource": "*",
            "Condition": {"StringEquals": {"iam:PassedToService": PASS_ROLE_TO}},
        }, {
            // The IAM user guide's pattern ("Using service-linked roles"):
            // the roles' own ARNs and the service name as the condition.
            "Effect": "Allow",
            "Action": ["iam:CreateServiceLinkedRole"],
            "Resource": SERVICE_LINKED_ROLES
                .iter()
                .map(|s| format!("arn:aws:iam::*:role/aws-service-role/{s}/*"))
                .collect::<Vec<_>>(),
            "Condition": {"StringEquals": {"iam:AWSServiceName": SERVICE_LINKED_ROLES}},
        }]
    });
    serde_json::to_string_pretty(&doc).expect("static JSON")
}

/// Why `policy` (a policy document) does not let a fresh account launch a
/// spot instance and run a FIS experiment, if it does not: it must allow
/// `iam:CreateServiceLinkedRole`, limited by `iam:AWSServiceName` to
/// exactly [`SERVICE_LINKED_ROLES`] (never unconditioned: the action would
/// then create any service's role).
pub fn service_linked_role_problem(policy: &serde_json::Value) -> Option<String> {
    let statements = policy["Statement"].as_array()?;
    let grants: Vec<&serde_json::Value> = statements
        .iter()
        .filter(|st| {
            st["Effect"] == "Allow"
                && match &st["Action"] {
                    serde_json::Value::String(a) => a == "iam:CreateServiceLinkedRole",
                    serde_json::Value::Array(v) => {
                        v.iter().any(|a| a == "iam:CreateServiceLinkedRole")
                    }
                    _ => false,
                }
        })
        .collect();
    if grants.is_empty() {
        return Some("no statement allows iam:CreateServiceLinkedRole: in a fresh account the first spot launch fails with AuthFailure.ServiceLinkedRoleCreationNotPermitted and the first FIS experiment cannot create AWSServiceRoleForFIS".into());
    }
    for g in grants {
        let names = &g["Condition"]["StringEquals"]["iam:AWSServiceName"];
        let mut seen: Vec<String> = match names {
            serde_json::Value::String(n) => vec![n.clone()],
            serde_json::Value::Array(v) => v
                .iter()
                .filter_map(|n| n.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        seen.sort();
        if seen != SERVICE_LINKED_ROLES {
            return Some(format!(
                "iam:CreateServiceLinkedRole must be limited by iam:AWSServiceName to exactly {SERVICE_LINKED_ROLES:?}, seen {seen:?}"
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Files whose SDK calls the policy must cover.
    fn sources(root: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(root.join("harness/src/machine/ec2"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "rs"))
            .collect();
        for f in ["template/ami.rs", "machine/backend.rs", "workspace/real.rs"] {
            v.push(root.join("harness/src").join(f));
        }
        v.sort();
        v
    }

    /// `service:operation` of every call on an EC2 client (`client.op()`,
    /// `c.op()`, `ec2.op()`) or an FIS client (`fis.op()`), waiters mapped
    /// to the operation they poll; `#[cfg(test)]` code excluded.
    fn calls(text: &str) -> BTreeSet<String> {
        let code = text.split("#[cfg(test)]").next().unwrap_or(text);
        let re =
            regex::Regex::new(r"\b(client|c|ec2|fis)\s*\.\s*([a-z][a-z0-9_]*)\s*\(\)").unwrap();
        let verbs = [
            "describe_",
            "run_",
            "create_",
            "delete_",
            "attach_",
            "detach_",
            "import_",
            "authorize_",
            "revoke_",
            "terminate_",
            "stop_",
            "start_",
            "cancel_",
            "modify_",
            "get_",
            "request_",
            "deregister_",
            "register_",
            "wait_until_",
            "send_",
            "list_",
        ];
        re.captures_iter(code)
            .map(|c| {
                let service = if &c[1] == "fis" { "fis" } else { "ec2" };
                (service, c[2].to_string())
            })
            .filter(|(_, op)| verbs.iter().any(|v| op.starts_with(v)))
            .map(|(service, op)| {
                let op = WAITERS
                    .iter()
                    .find(|(w, _)| *w == op)
                    .map_or(op.clone(), |(_, polled)| polled.to_string());
                format!("{service}:{op}")
            })
            .collect()
    }

    #[test]
    fn every_sdk_call_is_in_the_policy_and_nothing_else_is() {
        let root = crate::repo::root().unwrap();
        let mut called = BTreeSet::new();
        for f in sources(&root) {
            called.extend(calls(&std::fs::read_to_string(&f).unwrap()));
        }
        let listed: BTreeSet<String> = ACTIONS
            .iter()
            .filter_map(|(a, n)| match n {
                Need::Call(op) => Some(format!("{}:{op}", a.split(':').next().unwrap())),
                Need::Implied(_) => None,
            })
            .collect();
        let missing: Vec<_> = called.difference(&listed).collect();
        let unused: Vec<_> = listed.difference(&called).collect();
        assert!(
            missing.is_empty() && unused.is_empty(),
            "IAM policy (harness::machine::ec2::iam::ACTIONS): calls not listed: {missing:?}; listed but never called: {unused:?}"
        );
        // The scanner sees what it should.
        let sample = "ctx.client\n    .modify_instance_attribute()\n c.wait_until_volume_in_use() x.get_mut() c.clone() \
             fis.start_experiment() ec2.describe_instances()";
        assert_eq!(
            calls(sample),
            [
                "ec2:describe_instances",
                "ec2:describe_volumes",
                "ec2:modify_instance_attribute",
                "fis:start_experiment"
            ]
            .map(String::from)
            .into()
        );
        // An FIS operation listed under an EC2 action (or the reverse) is
        // not covered: the service is part of the match.
        assert!(!calls("fis.describe_instances()").contains("ec2:describe_instances"));
        // What only the template's provisioner calls is in its own policy
        // (docs/aws-setup.md), which the ec2 tier's credentials need too.
        let template = crate::template::iam::actions(&root).unwrap();
        assert!(template.contains("ec2:RunInstances"));
        assert!(!policy_json().contains("\"ec2:RunInstances\""));
        assert_eq!(
            not_allowed(
                &root,
                ["RunInstances", "CreateInstanceProfile", "GetConsoleOutput"]
            )
            .unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            not_allowed(&root, ["CreateSecurityGroup", "RunInstances"]).unwrap(),
            ["CreateSecurityGroup"]
        );
        // The FIS role may be passed, and only to FIS.
        let doc: serde_json::Value = serde_json::from_str(&policy_json()).unwrap();
        // Spot's and FIS's service-linked roles may be created, no other.
        assert_eq!(service_linked_role_problem(&doc), None);
        let pass = &doc["Statement"][1];
        assert_eq!(pass["Action"], serde_json::json!(["iam:PassRole"]));
        assert_eq!(
            pass["Condition"]["StringEquals"]["iam:PassedToService"],
            "fis.amazonaws.com"
        );
        assert!(!doc["Statement"][0]["Action"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a.as_str().unwrap().starts_with("iam:")));
        let sorted: Vec<_> = ACTIONS.iter().map(|(a, _)| *a).collect();
        let mut s = sorted.clone();
        s.sort();
        assert_eq!(sorted, s, "keep ACTIONS sorted");
    }

    #[test]
    fn a_fresh_account_can_create_only_spots_and_fis_service_linked_roles() {
        // The policy before issue 21: PassRole only.
        let old = serde_json::json!({"Statement": [
            {"Effect": "Allow", "Action": ["ec2:RunInstances"], "Resource": "*"},
            {"Effect": "Allow", "Action": ["iam:PassRole"], "Resource": "*",
             "Condition": {"StringEquals": {"iam:PassedToService": "fis.amazonaws.com"}}}
        ]});
        let e = service_linked_role_problem(&old).unwrap();
        assert!(e.contains("ServiceLinkedRoleCreationNotPermitted"), "{e}");
        let unconditioned = serde_json::json!({"Statement": [
            {"Effect": "Allow", "Action": "iam:CreateServiceLinkedRole", "Resource": "*"}
        ]});
        assert!(service_linked_role_problem(&unconditioned).is_some());
        let one = serde_json::json!({"Statement": [
            {"Effect": "Allow", "Action": "iam:CreateServiceLinkedRole", "Resource": "*",
             "Condition": {"StringEquals": {"iam:AWSServiceName": "spot.amazonaws.com"}}}
        ]});
        assert!(service_linked_role_problem(&one)
            .unwrap()
            .contains("fis.amazonaws.com"));
        let doc: serde_json::Value = serde_json::from_str(&policy_json()).unwrap();
        assert_eq!(service_linked_role_problem(&doc), None);
        let slr = &doc["Statement"][2];
        assert_eq!(
            slr["Action"],
            serde_json::json!(["iam:CreateServiceLinkedRole"])
        );
    }

    #[test]
    fn docs_show_the_generated_policy() {
        let root = crate::repo::root().unwrap();
        let readme = std::fs::read_to_string(root.join("docs/ec2.md")).unwrap();
        let marker = "<!-- iam-policy: generated by harness::machine::ec2::iam::policy_json() -->";
        let after = readme
            .split_once(marker)
            .map(|(_, a)| a)
            .unwrap_or_else(|| {
                panic!("docs/ec2.md: expected the marker `{marker}` before the policy block")
            });
        let block = after
            .split_once("```json\n")
            .and_then(|(_, b)| b.split_once("\n```"))
            .map(|(b, _)| b)
            .expect("a ```json block after the marker");
        assert_eq!(
            block,
            policy_json(),
            "docs/ec2.md's IAM policy differs from the generated one; paste `harness::machine::ec2::iam::policy_json()`"
        );
    }
}
