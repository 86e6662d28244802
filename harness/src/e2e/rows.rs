//! One report row per scenario (variant, arch, tier, check column), and
//! the JUnit file of the scenarios this machine could not run.

use cucumber::gherkin;

use crate::machine::backend::Backend;
use crate::report::summary::{Outcome, Row};

use super::skip::{scenario_tags, tag_value};
use super::world::resources;

/// must not make every scenario of that variant look like a spot scenario.
/// The report column of a scenario, from its name. The trailing
/// `(<variant>)` is dropped first: a variant name such as `aws-nixos-spot`
pub(crate) fn check_of(scenario: &str) -> String {
    let name = match scenario.rfind(" (") {
        Some(i) if scenario.ends_with(')') => &scenario[..i],
        _ => scenario,
    }
    .to_lowercase();
    let table: [(&[&str], &str); 9] = [
        (&["fails the twin"], "twin mutation"),
        (&["workspace's life"], "aws lifecycle"),
        (&["four checks"], "all four checks"),
        (&["home mount", "/home is the home disk"], "home mount"),
        (&["agent user", "agent runs as"], "agent user"),
        (&["log streaming", "logs stream"], "log streaming"),
        (&["ssh fallback", "ssh shell"], "ssh fallback"),
        (&["spot"], "spot interruption"),
        (&["stop and start"], "stop/start"),
    ];
    for (needles, check) in table {
        if needles.iter().any(|n| name.contains(n)) {
            return check.to_string();
        }
    }
    "other".into()
}

pub(crate) fn row(
    feature: &gherkin::Feature,
    scenario: &gherkin::Scenario,
    outcome: Outcome,
    reason: Option<String>,
    secs: f64,
) -> Row {
    let tags = scenario_tags(feature, scenario);
    let variant = tag_value(&tags, "variant-").unwrap_or_else(|| "-".into());
    let arch = if tags.iter().any(|t| t == "aarch64") {
        "aarch64"
    } else {
        "x86_64"
    };
    let real = tags.iter().any(|t| t == "nixos");
    let backend = if real {
        resources().backend()
    } else {
        Backend::Qemu
    };
    let twin = tags.iter().any(|t| t == "twin");
    let backend = if twin {
        "moto".to_string()
    } else {
        backend.as_str().to_string()
    };
    let image = match (real, backend.as_str()) {
        // The whole template with the real providers against the moto
        // double of AWS: no guest at all.
        (false, _) if twin => "twin (moto)",
        (true, "ec2") => "nixos AMI",
        (true, _) => "nixos",
        // Every other guest scenario (@contract) runs the template's real
        // user-data on the contract guest (a double of the NixOS AMI): its
        // own tier, never counted as NixOS.
        (false, _) => "contract",
    };
    Row {
        variant,
        arch: arch.into(),
        backend,
        image: image.into(),
        tier: None, // derived from image and backend by Summary::save
        check: check_of(&scenario.name),
        scenario: scenario.name.clone(),
        outcome,
        reason,
        seconds: secs,
        time_to_agent_s: None,
        time_to_ready_s: None,
        artifacts: None,
    }
}

pub(crate) fn junit_skipped(skips: &[Row]) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('"', "&quot;")
    };
    let mut x = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n<testsuite name=\"skipped (prerequisites missing)\" tests=\"{n}\" skipped=\"{n}\">\n",
        n = skips.len()
    );
    for r in skips {
        x.push_str(&format!(
            "  <testcase classname=\"{}\" name=\"{}\"><skipped message=\"{}\"/></testcase>\n",
            esc(&r.variant),
            esc(&r.scenario),
            esc(r.reason.as_deref().unwrap_or(""))
        ));
    }
    x.push_str("</testsuite>\n</testsuites>\n");
    x
}
