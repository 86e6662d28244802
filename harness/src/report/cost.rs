//! The `ec2` tier's estimated cost: a pure function of the instance types
//! a run used, how long each workspace existed, and its disks.
//!
//! Prices: AWS's list prices for us-east-1, Linux, On-Demand
//! (<https://aws.amazon.com/ec2/pricing/on-demand/>), gp3 storage
//! (<https://aws.amazon.com/ebs/pricing/>, $0.08 per GB-month) and public
//! IPv4 addresses (<https://aws.amazon.com/vpc/pricing/>, $0.005 per hour
//! since 2024-02-01).  [`PRICES_AS_OF`] is when they were checked: this
//! machine cannot reach aws.amazon.com, so the instance prices were taken
//! from the published rate card as cited in secondary sources of June 2026
//! (m7g.large $0.0816/h, t3.large $0.0832/h in us-east-1) and are unchanged
//! since those families launched.  Other regions cost up to ~30% more.
//! A spot workspace is billed at most the On-Demand price (the template's
//! default max price), so the estimate is an upper bound for spot.  T3/T4g
//! run "unlimited" by default: a NixOS rebuild that exhausts CPU credits
//! adds up to $0.05 per vCPU-hour, not counted here.

use std::time::Duration;

/// When the price table was last checked against its sources.
pub const PRICES_AS_OF: &str = "2026-06 (rate card as cited June 2026; not re-read 2026-12-06)";

/// USD per hour, us-east-1, Linux On-Demand, for every type of
/// `templates/instance-types.json` (a test keeps them in step).
pub const INSTANCE_USD_PER_HOUR: &[(&str, f64)] = &[
    ("t3.small", 0.0208),
    ("t3.medium", 0.0416),
    ("t3.large", 0.0832),
    ("t3.xlarge", 0.1664),
    ("m6i.large", 0.096),
    ("m6i.xlarge", 0.192),
    ("c6i.xlarge", 0.17),
    ("c6i.2xlarge", 0.34),
    ("t4g.small", 0.0168),
    ("t4g.medium", 0.0336),
    ("t4g.large", 0.0672),
    ("t4g.xlarge", 0.1344),
    ("m7g.large", 0.0816),
    ("m7g.xlarge", 0.1632),
    ("c7g.xlarge", 0.145),
    ("c7g.2xlarge", 0.289),
];

/// gp3, USD per GiB-month (730 hours).
pub const GP3_USD_PER_GIB_MONTH: f64 = 0.08;
/// A public IPv4 address, USD per hour.
pub const PUBLIC_IPV4_USD_PER_HOUR: f64 = 0.005;
const HOURS_PER_MONTH: f64 = 730.0;

/// One workspace's footprint over a span of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Usage {
    pub variant: String,
    pub instance_type: String,
    /// How long the instance (and its public address) existed.
    pub instance: Duration,
    /// Root + home volume size, and how long they existed.
    pub disk_gib: u32,
    pub disks: Duration,
}

/// The estimate, per line and in total.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    /// (variant, USD) per usage line.
    pub lines: Vec<(String, f64)>,
    pub total_usd: f64,
}

impl std::fmt::Display for Estimate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "estimated AWS cost of this run: ${:.3} (",
            self.total_usd
        )?;
        for (i, (v, usd)) in self.lines.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{v} ${usd:.3}")?;
        }
        write!(
            f,
            "; us-east-1 list prices as of {PRICES_AS_OF}, spot at most on-demand, see harness/src/report/cost.rs)"
        )
    }
}

/// The hourly price of `instance_type`, or an error naming it.
pub fn hourly(instance_type: &str) -> anyhow::Result<f64> {
    INSTANCE_USD_PER_HOUR
        .iter()
        .find(|(t, _)| *t == instance_type)
        .map(|(_, p)| *p)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "cost estimate: expected a price for instance type {instance_type:?} in \
                 harness/src/report/cost.rs, seen none; add it from the EC2 On-Demand pricing page"
            )
        })
}

/// The template's default disks: root 40 GiB + home 20 GiB
/// (templates/parameters.tf).
pub const DEFAULT_DISK_GIB: u32 = 60;

/// One [`Usage`] per `ec2` scenario that ran (not skipped) in `rows`, as
/// long as the scenario took (an upper bound of its workspace's life), with
/// `instance_type(variant)` (the variant's `default_instance_type`).
pub fn usage_from_rows(
    rows: &[crate::report::summary::Row],
    instance_type: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Vec<Usage>> {
    let mut by: std::collections::BTreeMap<(String, String), f64> = Default::default();
    for r in rows
        .iter()
        .filter(|r| r.backend == "ec2" && r.outcome != crate::report::summary::Outcome::Skipped)
    {
        let e = by
            .entry((r.scenario.clone(), r.variant.clone()))
            .or_default();
        *e = e.max(r.seconds);
    }
    by.into_iter()
        .map(|((_, variant), secs)| {
            let t = instance_type(&variant).ok_or_else(|| {
                anyhow::anyhow!("cost estimate: expected an instance type for {variant}, seen none")
            })?;
            let d = Duration::from_secs_f64(secs.max(0.0));
            Ok(Usage {
                variant,
                instance_type: t,
                instance: d,
                disk_gib: DEFAULT_DISK_GIB,
                disks: d,
            })
        })
        .collect()
}

/// Instance-hours × price + public IPv4 + gp3 GiB-hours.
pub fn estimate(usage: &[Usage]) -> anyhow::Result<Estimate> {
    let mut lines = vec![];
    for u in usage {
        let h = u.instance.as_secs_f64() / 3600.0;
        let disk_h = u.disks.as_secs_f64() / 3600.0;
        let usd = h * (hourly(&u.instance_type)? + PUBLIC_IPV4_USD_PER_HOUR)
            + f64::from(u.disk_gib) * disk_h * GP3_USD_PER_GIB_MONTH / HOURS_PER_MONTH;
        lines.push((u.variant.clone(), usd));
    }
    let total_usd = lines.iter().map(|(_, c)| c).sum();
    Ok(Estimate { lines, total_usd })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_an_hour_per_default_variant_is_about_ten_cents() {
        let half = Duration::from_secs(1800);
        let u = |v: &str, t: &str| Usage {
            variant: v.into(),
            instance_type: t.into(),
            instance: half,
            disk_gib: 60,
            disks: half,
        };
        let e = estimate(&[
            u("aws-nixos", "t3.medium"),
            u("aws-nixos-spot", "t3.medium"),
            u("aws-nixos-graviton", "t4g.medium"),
            u("aws-nixos-graviton-spot", "t4g.medium"),
        ])
        .unwrap();
        // 2 × 0.5 h × (0.0416 + 0.005) + 2 × 0.5 h × (0.0336 + 0.005)
        // + 4 × 60 GiB × 0.5 h × 0.08 / 730
        let want = 0.0466 + 0.0386 + 240.0 * 0.5 * 0.08 / 730.0;
        assert!((e.total_usd - want).abs() < 1e-9, "{e:?} vs {want}");
        assert_eq!(e.lines.len(), 4);
        let shown = e.to_string();
        assert!(
            shown.contains("$0.098") && shown.contains("aws-nixos-spot $0.0"),
            "{shown}"
        );
        // Twice as long costs twice as much; a larger type costs more.
        let double = estimate(&[Usage {
            instance: half * 2,
            disks: half * 2,
            ..u("a", "t3.medium")
        }])
        .unwrap();
        assert!((double.total_usd - 2.0 * e.lines[0].1).abs() < 1e-9);
        assert!(
            estimate(&[u("a", "t3.large")]).unwrap().total_usd > e.lines[0].1,
            "t3.large must cost more than t3.medium"
        );
        assert_eq!(estimate(&[]).unwrap().total_usd, 0.0);
    }

    #[test]
    fn every_offered_type_has_a_price_and_an_unknown_one_is_named() {
        let root = crate::repo::root().unwrap();
        let text = std::fs::read_to_string(root.join("templates/instance-types.json")).unwrap();
        let offered: serde_json::Value = serde_json::from_str(&text).unwrap();
        for (_, types) in offered.as_object().unwrap() {
            for t in types.as_object().unwrap().keys() {
                assert!(hourly(t).is_ok(), "no price for offered type {t}");
            }
        }
        let e = hourly("x9.huge").unwrap_err().to_string();
        assert!(e.contains("x9.huge") && e.contains("cost.rs"), "{e}");
    }

    #[test]
    fn usage_is_one_line_per_ec2_scenario_that_ran() {
        use crate::report::summary::{Outcome, Row};
        let row = |scenario: &str, backend: &str, outcome: Outcome, seconds: f64| {
            let mut r: Row = serde_json::from_value(serde_json::json!({
                "variant": "aws-nixos", "arch": "x86_64", "backend": backend, "image": "nixos",
                "check": "home mount", "scenario": scenario, "outcome": "passed", "seconds": seconds
            }))
            .unwrap();
            r.outcome = outcome;
            r
        };
        let rows = [
            row("s1", "ec2", Outcome::Passed, 600.0),
            row("s1", "ec2", Outcome::Failed, 600.0),
            row("s2", "ec2", Outcome::Passed, 1200.0),
            row("s3", "ec2", Outcome::Skipped, 0.0),
            row("s4", "qemu", Outcome::Passed, 900.0),
        ];
        let u = usage_from_rows(&rows, |_| Some("t3.medium".into())).unwrap();
        let secs: Vec<u64> = u.iter().map(|u| u.instance.as_secs()).collect();
        assert_eq!(secs, [600, 1200]);
        assert!(usage_from_rows(&rows, |_| None).is_err());
    }
}
