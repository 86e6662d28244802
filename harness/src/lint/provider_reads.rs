//! Which attributes of another resource the template may read: only those
//! the provider's Read sets (hashicorp/terraform-provider-aws 5.100.0, the
//! version the twin tier runs; the file is named beside each entry), or
//! Terraform's own `terraform_data`.  An attribute the Read never sets is
//! null or unknown however the apply went (the spot request's
//! `availability_zone`: issue 20 item 2), so reading one is a finding, and
//! so is reading an attribute or a resource type this list does not know
//! (add it with the provider file that sets it).
//!
//! Checked over every `*.tf` under `templates/` (tests excluded): each
//! reference `TYPE.NAME[…].ATTR` or `data.TYPE.NAME[…].ATTR` whose TYPE is
//! an `aws_*` type or `terraform_data`.

use std::path::{Path, PathBuf};

use super::Finding;

/// Check name.
pub const CHECK: &str = "provider-reads";

/// (`resource` or `data`, type, readable attributes, the provider source
/// whose Read sets them).
pub const READABLE: &[(&str, &str, &[&str], &str)] = &[
    (
        "resource",
        "aws_instance",
        &[
            "id",
            "arn",
            "availability_zone",
            "instance_state",
            "subnet_id",
            "private_ip",
            "public_ip",
            "primary_network_interface_id",
            "spot_instance_request_id",
            "instance_lifecycle",
            "root_block_device",
            "metadata_options",
            "iam_instance_profile",
            "instance_type",
            "ami",
            "tags_all",
        ],
        "internal/service/ec2/ec2_instance.go, resourceInstanceRead (placement, state, subnet, block devices, metadata options, profile, spot request id when DescribeInstances names one)",
    ),
    (
        "resource",
        "aws_spot_instance_request",
        &[
            "id",
            "spot_instance_id",
            "spot_request_state",
            "spot_bid_status",
            "private_ip",
            "public_ip",
            "subnet_id",
            "primary_network_interface_id",
            "root_block_device",
            "instance_type",
            "tags_all",
        ],
        "internal/service/ec2/ec2_spot_instance_request.go, Read and readInstance (no availability_zone, instance_state, metadata_options)",
    ),
    (
        "resource",
        "aws_ebs_volume",
        &["id", "arn", "availability_zone", "size", "type", "encrypted", "tags_all"],
        "internal/service/ec2/ebs_volume.go, resourceEBSVolumeRead",
    ),
    (
        "resource",
        "aws_volume_attachment",
        &["id", "device_name", "instance_id", "volume_id"],
        "internal/service/ec2/ebs_volume_attachment.go, resourceVolumeAttachmentRead",
    ),
    (
        "resource",
        "aws_iam_instance_profile",
        &["id", "arn", "name", "unique_id", "role"],
        "internal/service/iam/instance_profile.go, resourceInstanceProfileRead",
    ),
    (
        "resource",
        "aws_ec2_instance_state",
        &["id", "instance_id", "state"],
        "internal/service/ec2/ec2_instance_state.go, resourceInstanceStateRead",
    ),
    (
        "resource",
        "terraform_data",
        &["id", "input", "output"],
        "Terraform's built-in terraform_data (output mirrors input)",
    ),
    (
        "data",
        "aws_ami",
        &["id", "arn", "image_id", "name", "architecture", "root_device_name"],
        "internal/service/ec2/ec2_ami_data_source.go",
    ),
    (
        "data",
        "aws_availability_zones",
        &["names", "zone_ids", "id"],
        "internal/service/ec2/ec2_availability_zones_data_source.go",
    ),
    (
        "data",
        "aws_ec2_instance_type_offerings",
        &["instance_types", "locations", "location_types", "id"],
        "internal/service/ec2/ec2_instance_type_offerings_data_source.go",
    ),
    (
        "data",
        "aws_ebs_volumes",
        &["ids", "id"],
        "internal/service/ec2/ebs_volumes_data_source.go",
    ),
    (
        "data",
        "aws_ebs_volume",
        &["id", "volume_id", "availability_zone", "size", "encrypted"],
        "internal/service/ec2/ebs_volume_data_source.go",
    ),
    (
        "data",
        "aws_vpc",
        &["id", "arn", "cidr_block"],
        "internal/service/ec2/vpc_data_source.go",
    ),
    (
        "data",
        "aws_subnet",
        &["id", "arn", "availability_zone", "vpc_id"],
        "internal/service/ec2/vpc_subnet_data_source.go",
    ),
];

/// One attribute read from another resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub file: PathBuf,
    pub line: usize,
    /// `resource` or `data`.
    pub kind: &'static str,
    pub ty: String,
    pub name: String,
    pub attr: String,
}

/// Every read of an `aws_*` or `terraform_data` attribute in `text`.
pub fn reads(file: &Path, text: &str) -> Vec<Read> {
    let re = regex::Regex::new(
        r"(data\.)?\b(aws_[a-z0-9_]+|terraform_data)\.([A-Za-z_][A-Za-z0-9_-]*)(\[[^\]]*\])?\.([a-z_][a-z0-9_]*)",
    )
    .expect("regex");
    let mut out = vec![];
    for (i, raw) in text.lines().enumerate() {
        // Comments are prose (and cite these very attributes).
        let line = match raw.find('#') {
            Some(p) if !raw[..p].contains('"') => &raw[..p],
            _ => raw,
        };
        let t = line.trim_start();
        if t.starts_with("//") || t.starts_with("resource ") || t.starts_with("data ") {
            continue;
        }
        for c in re.captures_iter(line) {
            let start = c.get(0).unwrap().start();
            // `module.x.aws_…` or `local.aws_…` is not a resource reference.
            if start > 0 && line[..start].ends_with('.') {
                continue;
            }
            out.push(Read {
                file: file.to_path_buf(),
                line: i + 1,
                kind: if c.get(1).is_some() {
                    "data"
                } else {
                    "resource"
                },
                ty: c[2].to_string(),
                name: c[3].to_string(),
                attr: c[5].to_string(),
            });
        }
    }
    out
}

/// Findings for `reads` against [`READABLE`].
pub fn judge(reads: &[Read]) -> Vec<Finding> {
    let mut f = vec![];
    for r in reads {
        let key = format!("{}", r.line);
        let entry = READABLE
            .iter()
            .find(|(k, t, _, _)| *k == r.kind && *t == r.ty);
        let prefix = if r.kind == "data" { "data." } else { "" };
        match entry {
            None => f.push(Finding::new(
                CHECK,
                &r.file,
                Some(&key),
                format!(
                    "{prefix}{}.{}.{}: {} {} is not in harness::lint::provider_reads::READABLE; add it with the provider file whose Read sets `{}`",
                    r.ty, r.name, r.attr, r.kind, r.ty, r.attr
                ),
            )),
            Some((_, _, attrs, source)) if !attrs.contains(&r.attr.as_str()) => f.push(Finding::new(
                CHECK,
                &r.file,
                Some(&key),
                format!(
                    "{prefix}{}.{}.{}: the provider's Read never sets `{}` ({source}); it stays null or unknown, whatever the apply did. Readable: {}",
                    r.ty,
                    r.name,
                    r.attr,
                    r.attr,
                    attrs.join(", ")
                ),
            )),
            Some(_) => {}
        }
    }
    f
}

fn tf_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            if e.file_name() != "tests" && e.file_name() != ".terraform" {
                tf_files(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "tf") {
            out.push(p);
        }
    }
}

/// The lint over `root/templates`.
pub fn check(root: &Path) -> Vec<Finding> {
    let mut files = vec![];
    tf_files(&root.join("templates"), &mut files);
    files.sort();
    let mut all = vec![];
    for f in files {
        match std::fs::read_to_string(&f) {
            Ok(t) => all.extend(reads(&f, &t)),
            Err(e) => {
                return vec![Finding::new(CHECK, &f, None, format!("cannot read: {e}"))];
            }
        }
    }
    judge(&all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_reads_only_what_the_provider_sets() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        assert_eq!(check(root), vec![]);
        // And it does read some (the scan is not blind).
        let mut files = vec![];
        tf_files(&root.join("templates"), &mut files);
        let n: usize = files
            .iter()
            .map(|f| reads(f, &std::fs::read_to_string(f).unwrap()).len())
            .sum();
        assert!(n >= 10, "only {n} reads found");
    }

    #[test]
    fn the_spot_requests_zone_and_unknown_reads_are_findings() {
        let text = "locals {\n  z = aws_spot_instance_request.this[0].availability_zone # its zone\n  a = data.aws_subnet.zone.availability_zone\n  b = aws_eip.x.public_ip\n  c = module.instance.aws_instance_id\n}\n# aws_spot_instance_request.this[0].availability_zone in a comment\n";
        let r = reads(Path::new("m.tf"), text);
        assert_eq!(r.len(), 3, "{r:?}");
        let f = judge(&r);
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(
            f[0].message.contains("never sets `availability_zone`")
                && f[0].message.contains("ec2_spot_instance_request.go"),
            "{}",
            f[0]
        );
        assert_eq!(f[0].key.as_deref(), Some("2"));
        assert!(f[1].message.contains("aws_eip is not in"), "{}", f[1]);
        // The old template's read is caught.
        let old = "  availability_zone = local.is_spot ? aws_spot_instance_request.this[0].availability_zone : aws_instance.this[0].availability_zone\n";
        assert_eq!(judge(&reads(Path::new("m.tf"), old)).len(), 1);
    }
}
