//! The agent user rules: a plain Linux user name that is neither `root`
//! nor a user NixOS itself defines.
//!
//! `root` merges into `users.users.root` (the agent would run as uid 0);
//! a NixOS system user (`isSystemUser`) fails NixOS's assertion that exactly
//! one of `isNormalUser`/`isSystemUser` is set once the bootstrap module
//! declares it `isNormalUser`. [`RESERVED`] is the one list; [`check`]
//! proves the places that encode the rules agree with it:
//! - `coder_parameter.agent_user` in `templates/parameters.tf` checks only
//!   the name's shape, with exactly [`NAME_PATTERN`]: terraform-provider-coder
//!   prints the whole regex in its error (`provider/parameter.go`), so a
//!   regex that also excluded the reserved names (Go RE2 has no lookahead:
//!   a 42 KB complement) made `agent_user=root` print 43 KB;
//! - the bootstrap module's `reserved_users` local (a literal list,
//!   `templates/modules/bootstrap/main.tf`) and its `agent_user` validation,
//!   which names that local (or carries the list itself) and is where a
//!   workspace build refuses a reserved name, naming the rule;
//! - `bootstrap.nix`'s assertion (literal list), on the machine.
//!
//! The contract guest's declaration data carries the list too
//! (`image::contract`'s tests compare it).

use std::path::Path;

use super::Finding;

/// A plain Linux user name (the `useradd` default rule, at most 32 chars).
pub const NAME_PATTERN: &str = "^[a-z_][a-z0-9_-]{0,31}$";

/// `root` and every user a NixOS system may define as a system user.
///
/// Sources (nixpkgs, read at commit 001d025f of `nixos/modules/misc/ids.nix`):
/// every name with a static uid in `ids.uids` (commented-out entries
/// left out), then the users a default NixOS system and the official Amazon
/// image declare without a static uid: `sshd` (services/networking/ssh/sshd.nix),
/// `nscd` (services/system/nscd.nix), `systemd-oom` (systemd/oomd.nix),
/// `dhcpcd` (services/networking/dhcpcd.nix), `ssm-user`
/// (services/misc/amazon-ssm-agent.nix) and the Nix build users
/// `nixbld1`..`nixbld32` (services/system/nix-daemon.nix, `nix.nrBuildUsers`).
pub const RESERVED: &[&str] = &[
    // ids.uids
    "root",
    "messagebus",
    "haldaemon",
    "ftp",
    "nagios",
    "atd",
    "postfix",
    "dovecot",
    "tomcat",
    "uucp",
    "pulseaudio",
    "gpsd",
    "polkituser",
    "davfs2",
    "disnix",
    "osgi",
    "tor",
    "cups",
    "foldingathome",
    "sabnzbd",
    "git",
    "dovecot2",
    "dovenull2",
    "mpd",
    "clamav",
    "wwwrun",
    "spamd",
    "nslcd",
    "scanner",
    "nginx",
    "chrony",
    "smtpd",
    "smtpq",
    "supybot",
    "iodined",
    "graphite",
    "transmission",
    "postgres",
    "smbguest",
    "varnish",
    "datadog",
    "lighttpd",
    "lightdm",
    "freenet",
    "ircd",
    "bacula",
    "deluge",
    "mysql",
    "rabbitmq",
    "activemq",
    "gnunet",
    "oidentd",
    "quassel",
    "amule",
    "minidlna",
    "elasticsearch",
    "tcpcryptd",
    "firebird",
    "munin",
    "dictd",
    "couchdb",
    "jenkins",
    "systemd-journal-gateway",
    "aerospike",
    "vault",
    "murmur",
    "foundationdb",
    "newrelic",
    "starbound",
    "hydra",
    "spiped",
    "teamspeak",
    "influxdb",
    "nsd",
    "gitolite",
    "znc",
    "polipo",
    "mopidy",
    "gdm",
    "siproxd",
    "mlmmj",
    "riemann",
    "riemanndash",
    "yandexdisk",
    "redmine",
    "prosody",
    "i2pd",
    "systemd-coredump",
    "systemd-network",
    "systemd-resolve",
    "systemd-timesync",
    "liquidsoap",
    "hbase",
    "opentsdb",
    "scollector",
    "bosun",
    "kubernetes",
    "peerflix",
    "gitlab",
    "cadvisor",
    "nylon",
    "exim",
    "sddm",
    "zabbix",
    "uptimed",
    "mediatomb",
    "ihaskell",
    "i2p",
    "lambdabot",
    "asterisk",
    "plex",
    "plexpy",
    "grafana",
    "skydns",
    "uwsgi",
    "riemanntools",
    "subsonic",
    "gateone",
    "namecoin",
    "xtreemfs",
    "calibre-server",
    "bepasty",
    "nm-openvpn",
    "ejabberd",
    "postsrsd",
    "opendkim",
    "dspam",
    "matrix-synapse",
    "rspamd",
    "cfdyndns",
    "pdnsd",
    "octoprint",
    "avahi-autoipd",
    "mjpg-streamer",
    "hydra-queue-runner",
    "hydra-www",
    "syncthing",
    "caddy",
    "taskd",
    "sniproxy",
    "nzbget",
    "mosquitto",
    "turnserver",
    "gocd-agent",
    "gocd-server",
    "terraria",
    "mattermost",
    "prometheus",
    "telegraf",
    "gitlab-runner",
    "postgrey",
    "leaps",
    "ipfs",
    "infinoted",
    "sickbeard",
    "headphones",
    "rpc",
    "fcron",
    "sonarr",
    "radarr",
    "jackett",
    "aria2",
    "clickhouse",
    "rslsync",
    "minio",
    "kanboard",
    "kodi",
    "mighttpd2",
    "hass",
    "ceph",
    "duplicati",
    "monetdb",
    "restic",
    "openvpn",
    "yarn",
    "hdfs",
    "mapred",
    "hadoop",
    "cfssl",
    "cassandra",
    "qemu-libvirtd",
    "lirc",
    "lidarr",
    "slurm",
    "kapacitor",
    "alerta",
    "minetest",
    "rss2email",
    "cockroachdb",
    "zoneminder",
    "paperless",
    "zigbee2mqtt",
    "hqplayer",
    "moonraker",
    "distcc",
    "webdav",
    "pipewire",
    "rstudio-server",
    "localtimed",
    "automatic-timezoned",
    "shoko",
    "nixbld",
    "nobody",
    // a default system and the Amazon image, without static uids
    "sshd",
    "nscd",
    "systemd-oom",
    "dhcpcd",
    "ssm-user",
    "nixbld1",
    "nixbld2",
    "nixbld3",
    "nixbld4",
    "nixbld5",
    "nixbld6",
    "nixbld7",
    "nixbld8",
    "nixbld9",
    "nixbld10",
    "nixbld11",
    "nixbld12",
    "nixbld13",
    "nixbld14",
    "nixbld15",
    "nixbld16",
    "nixbld17",
    "nixbld18",
    "nixbld19",
    "nixbld20",
    "nixbld21",
    "nixbld22",
    "nixbld23",
    "nixbld24",
    "nixbld25",
    "nixbld26",
    "nixbld27",
    "nixbld28",
    "nixbld29",
    "nixbld30",
    "nixbld31",
    "nixbld32",
];

/// Is `name` an acceptable agent user?
pub fn is_allowed(name: &str) -> bool {
    regex::Regex::new(NAME_PATTERN).unwrap().is_match(name) && !RESERVED.contains(&name)
}

fn sorted(v: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = v.into_iter().collect();
    v.sort();
    v.dedup();
    v
}

fn expected() -> Vec<String> {
    sorted(RESERVED.iter().map(|s| s.to_string()))
}

/// String items of the first list literal found in `expr`.
fn list_in(expr: &hcl::Expression) -> Option<Vec<String>> {
    use hcl::Expression as E;
    match expr {
        E::Array(items) => Some(
            items
                .iter()
                .filter_map(|e| match e {
                    E::String(s) => Some(s.clone()),
                    _ => None,
                })
                .collect(),
        ),
        E::FuncCall(f) => f.args.iter().find_map(list_in),
        E::Operation(op) => match op.as_ref() {
            hcl::expr::Operation::Unary(u) => list_in(&u.expr),
            hcl::expr::Operation::Binary(b) => {
                list_in(&b.lhs_expr).or_else(|| list_in(&b.rhs_expr))
            }
        },
        E::Parenthesis(e) => list_in(e),
        _ => None,
    }
}

/// Whether `expr` refers to `local.<name>` (in a function call's arguments,
/// an operation or parentheses, as `!contains(local.x, var.y)` does).
fn names_local(expr: &hcl::Expression, name: &str) -> bool {
    use hcl::Expression as E;
    match expr {
        E::Traversal(t) => {
            matches!(&t.expr, E::Variable(v) if v.as_str() == "local")
                && matches!(t.operators.first(), Some(hcl::TraversalOperator::GetAttr(a)) if a.as_str() == name)
        }
        E::FuncCall(f) => f.args.iter().any(|a| names_local(a, name)),
        E::Operation(op) => match op.as_ref() {
            hcl::expr::Operation::Unary(u) => names_local(&u.expr, name),
            hcl::expr::Operation::Binary(b) => {
                names_local(&b.lhs_expr, name) || names_local(&b.rhs_expr, name)
            }
        },
        E::Parenthesis(e) => names_local(e, name),
        _ => false,
    }
}

/// The regex of a `validation.regex` attribute, when it is a literal.
pub fn regex_value(expr: &hcl::Expression) -> Option<String> {
    match expr {
        hcl::Expression::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// Every place that encodes the agent user rules agrees with [`RESERVED`].
pub fn check(root: &Path) -> Vec<Finding> {
    let mut out = vec![];
    let want = expected();

    // 1. coder_parameter.agent_user: the plain name pattern, nothing longer.
    let params = root.join("templates/parameters.tf");
    match std::fs::read_to_string(&params)
        .map_err(anyhow::Error::from)
        .and_then(|s| hcl::parse(&s).map_err(anyhow::Error::from))
    {
        Err(e) => out.push(Finding::new("agent-user", &params, None, e.to_string())),
        Ok(body) => {
            let regex = body
                .blocks()
                .filter(|b| b.identifier() == "data")
                .filter(|b| {
                    b.labels().iter().map(|l| l.as_str()).collect::<Vec<_>>()
                        == ["coder_parameter", "agent_user"]
                })
                .flat_map(|b| b.body().blocks().filter(|v| v.identifier() == "validation"))
                .flat_map(|v| v.body().attributes().filter(|a| a.key() == "regex"))
                .map(|a| regex_value(a.expr()))
                .next();
            if regex.as_ref().and_then(|r| r.as_deref()) != Some(NAME_PATTERN) {
                out.push(Finding::new(
                    "agent-user",
                    &params,
                    Some("coder_parameter.agent_user.validation.regex"),
                    format!(
                        "expected the literal regex {NAME_PATTERN:?} (the coder provider prints the whole regex in its error; reserved names are refused by the bootstrap module), found {}",
                        match &regex {
                            Some(Some(r)) if r.len() > 80 => format!("a regex of {} bytes", r.len()),
                            Some(Some(r)) => format!("{r:?}"),
                            Some(None) => "a regex that is not a literal string".into(),
                            None => "no regex".into(),
                        }
                    ),
                ));
            }
        }
    }

    // 2. the bootstrap module: validation and local.
    let main = root.join("templates/modules/bootstrap/main.tf");
    match std::fs::read_to_string(&main)
        .map_err(anyhow::Error::from)
        .and_then(|s| hcl::parse(&s).map_err(anyhow::Error::from))
    {
        Err(e) => out.push(Finding::new("agent-user", &main, None, e.to_string())),
        Ok(body) => {
            // A validation refuses the reserved names: it names
            // local.reserved_users (checked below) or lists them itself.
            let refuses = body
                .blocks()
                .filter(|b| {
                    b.identifier() == "variable"
                        && b.labels().first().map(|l| l.as_str()) == Some("agent_user")
                })
                .flat_map(|b| b.body().blocks().filter(|v| v.identifier() == "validation"))
                .flat_map(|v| v.body().attributes().filter(|a| a.key() == "condition"))
                .any(|a| {
                    names_local(a.expr(), "reserved_users")
                        || list_in(a.expr()).is_some_and(|l| sorted(l) == want)
                });
            if !refuses {
                out.push(Finding::new(
                    "agent-user",
                    &main,
                    Some("variable.agent_user.validation"),
                    "expected a validation that refuses local.reserved_users (or whose list is exactly harness::lint::agent_user::RESERVED)",
                ));
            }
            let local = body
                .blocks()
                .filter(|b| b.identifier() == "locals")
                .flat_map(|b| {
                    b.body()
                        .attributes()
                        .filter(|a| a.key() == "reserved_users")
                })
                .find_map(|a| list_in(a.expr()));
            if local.map(sorted) != Some(want.clone()) {
                out.push(Finding::new(
                    "agent-user",
                    &main,
                    Some("locals.reserved_users"),
                    "expected local.reserved_users to be exactly harness::lint::agent_user::RESERVED",
                ));
            }
        }
    }

    // 3. bootstrap.nix: the names between the two marker comments.
    let nix = root.join("templates/modules/bootstrap/bootstrap.nix");
    match std::fs::read_to_string(&nix) {
        Err(e) => out.push(Finding::new("agent-user", &nix, None, e.to_string())),
        Ok(src) => {
            let names = src
                .split_once("# reserved-users:begin")
                .and_then(|(_, r)| r.split_once("# reserved-users:end"))
                .map(|(list, _)| {
                    sorted(
                        list.split_whitespace()
                            .map(|w| w.trim_matches('"').to_string())
                            .filter(|w| !w.is_empty()),
                    )
                });
            if names != Some(want.clone()) {
                out.push(Finding::new(
                    "agent-user",
                    &nix,
                    Some("reserved-users"),
                    "expected the quoted names between `# reserved-users:begin` and `# reserved-users:end` to be exactly harness::lint::agent_user::RESERVED",
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn is_allowed_refuses_reserved_and_malformed_names() {
        for ok in [
            "coder", "alice", "_build", "a", "nixbld0", "roots", "gits", "nixbld33",
        ] {
            assert!(is_allowed(ok), "{ok} must be accepted");
        }
        for bad in [
            "root", "nobody", "sshd", "nixbld7", "Root", "a b", "1abc", "",
        ] {
            assert!(!is_allowed(bad), "{bad} must be refused");
        }
        assert!(!is_allowed(&"a".repeat(33)) && is_allowed(&"a".repeat(32)));
    }

    #[test]
    fn the_list_is_clean() {
        let base = regex::Regex::new(NAME_PATTERN).unwrap();
        let mut seen = BTreeSet::new();
        for r in RESERVED {
            assert!(base.is_match(r), "{r} is not a plain user name");
            assert!(seen.insert(*r), "{r} listed twice");
        }
        assert!(RESERVED.contains(&"root") && RESERVED.contains(&"nobody"));
    }

    #[test]
    fn check_names_each_place_that_disagrees() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        std::fs::create_dir_all(root.join("templates/modules/bootstrap")).unwrap();
        std::fs::write(
            root.join("templates/parameters.tf"),
            "data \"coder_parameter\" \"agent_user\" {\n  validation {\n    regex = \"^(?:[a-qs-z_][a-z0-9_-]{0,31}|r[a-np-z0-9_-]{0,30})$\"\n    error = \"x\"\n  }\n}\n",
        )
        .unwrap();
        std::fs::write(
            root.join("templates/modules/bootstrap/main.tf"),
            "variable \"agent_user\" {\n  validation {\n    condition = !contains([\"root\"], var.agent_user)\n    error_message = \"x\"\n  }\n}\nlocals {\n  reserved_users = [\"root\"]\n}\n",
        )
        .unwrap();
        std::fs::write(
            root.join("templates/modules/bootstrap/bootstrap.nix"),
            "{ }\n",
        )
        .unwrap();
        let f = check(root);
        let keys: Vec<_> = f
            .iter()
            .map(|f| f.key.clone().unwrap_or_default())
            .collect();
        assert_eq!(
            keys,
            [
                "coder_parameter.agent_user.validation.regex",
                "variable.agent_user.validation",
                "locals.reserved_users",
                "reserved-users"
            ],
            "{f:?}"
        );
    }

    /// The bootstrap module with `condition` as the agent_user validation
    /// and the full reserved list as local.reserved_users: the keys of the
    /// findings about the bootstrap module.
    fn bootstrap_findings(condition: &str) -> Vec<String> {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        std::fs::create_dir_all(root.join("templates/modules/bootstrap")).unwrap();
        let list: Vec<String> = RESERVED.iter().map(|n| format!("{n:?}")).collect();
        std::fs::write(
            root.join("templates/modules/bootstrap/main.tf"),
            format!(
                "variable \"agent_user\" {{\n  validation {{\n    condition = {condition}\n    error_message = \"x\"\n  }}\n}}\nlocals {{\n  reserved_users = [{}]\n}}\n",
                list.join(", ")
            ),
        )
        .unwrap();
        check(root)
            .into_iter()
            .filter(|f| f.file.ends_with("main.tf"))
            .map(|f| f.key.unwrap_or_default())
            .collect()
    }

    #[test]
    fn the_validation_may_refuse_the_local_but_not_another() {
        assert!(bootstrap_findings("!contains(local.reserved_users, var.agent_user)").is_empty());
        assert_eq!(
            bootstrap_findings("!contains(local.other_users, var.agent_user)"),
            ["variable.agent_user.validation"]
        );
        assert_eq!(
            bootstrap_findings("can(regex(\"^[a-z]+$\", var.agent_user))"),
            ["variable.agent_user.validation"]
        );
    }

    /// The parameter's regex: exactly the plain pattern; the old file()
    /// of a generated complement, or any longer regex, is refused.
    #[test]
    fn the_parameter_regex_is_the_plain_pattern() {
        let findings = |regex: &str| {
            let t = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(t.path().join("templates/modules/bootstrap")).unwrap();
            std::fs::write(
                t.path().join("templates/parameters.tf"),
                format!("data \"coder_parameter\" \"agent_user\" {{\n  validation {{\n    regex = {regex}\n    error = \"x\"\n  }}\n}}\n"),
            )
            .unwrap();
            check(t.path())
                .into_iter()
                .filter(|f| f.key.as_deref() == Some("coder_parameter.agent_user.validation.regex"))
                .map(|f| f.message)
                .collect::<Vec<_>>()
        };
        assert!(findings(&format!("{NAME_PATTERN:?}")).is_empty());
        let old = findings("trimspace(file(\"${path.module}/agent-user.regex\"))");
        assert!(old[0].contains("not a literal string"), "{old:?}");
        let long = format!(
            "\"^(?:{})$\"",
            (0..50)
                .map(|n| format!("u{n}"))
                .collect::<Vec<_>>()
                .join("|")
        );
        assert!(findings(&long)[0].contains("a regex of"), "{long}");
    }

    #[test]
    fn the_shipped_template_agrees() {
        let f = check(&crate::repo::root().unwrap());
        assert!(f.is_empty(), "{f:?}");
    }
}
