//! The agent user rules: a plain Linux user name that is neither `root`
//! nor a user NixOS itself defines.
//!
//! `root` merges into `users.users.root` (the agent would run as uid 0);
//! a NixOS system user (`isSystemUser`) fails NixOS's assertion that exactly
//! one of `isNormalUser`/`isSystemUser` is set once the bootstrap module
//! declares it `isNormalUser`. [`RESERVED`] is the one list; four places
//! must agree with it, and [`check`] proves they do:
//! - `coder_parameter.agent_user` in `templates/parameters.tf`: Coder
//!   validates with Go's RE2 (terraform-provider-coder `provider/parameter.go`,
//!   `regexp.MatchString`), which has no lookahead, so the regex is the
//!   generated complement [`complement_regex`] (a trie of the names);
//! - the bootstrap module's `reserved_users` local (a literal list,
//!   `templates/modules/bootstrap/main.tf`) and its `agent_user` validation
//!   (which names that local, or carries the list itself);
//! - `bootstrap.nix`'s assertion (literal list);
//! - the user-data's own check, rendered from the `reserved_users` local.

use std::collections::{BTreeMap, BTreeSet};
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

const MAX_LEN: usize = 32;
const FIRST: &str = "abcdefghijklmnopqrstuvwxyz_";
const REST: &str = "abcdefghijklmnopqrstuvwxyz0123456789_-";

/// Is `name` an acceptable agent user?
pub fn is_allowed(name: &str) -> bool {
    regex::Regex::new(NAME_PATTERN).unwrap().is_match(name) && !RESERVED.contains(&name)
}

#[derive(Default)]
struct Node {
    terminal: bool,
    children: BTreeMap<char, Node>,
}

/// A character class of `alphabet` minus `except`, as compact ranges
/// (`None` when nothing is left).
fn class(alphabet: &str, except: &BTreeSet<char>) -> Option<String> {
    let chars: Vec<char> = alphabet.chars().filter(|c| !except.contains(c)).collect();
    if chars.is_empty() {
        return None;
    }
    let mut out = String::from("[");
    let mut dash = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '-' {
            dash = true;
            i += 1;
            continue;
        }
        // Extend a run of consecutive code points within a-z or 0-9.
        let mut j = i;
        while j + 1 < chars.len()
            && chars[j + 1] as u32 == chars[j] as u32 + 1
            && chars[j + 1].is_ascii_alphanumeric()
            && c.is_ascii_alphanumeric()
        {
            j += 1;
        }
        match j - i {
            0 => out.push(c),
            1 => {
                out.push(c);
                out.push(chars[j]);
            }
            _ => {
                out.push(c);
                out.push('-');
                out.push(chars[j]);
            }
        }
        i = j + 1;
    }
    if dash {
        // A trailing `-` is literal in RE2 and in the regex crate.
        out.push('-');
    }
    out.push(']');
    Some(out)
}

/// Suffixes `s` such that `prefix + s` is a plain user name not in the
/// trie, where `depth = prefix.len()`.
fn complement(node: &Node, depth: usize) -> String {
    let mut alts = vec![];
    if depth < MAX_LEN {
        let alphabet = if depth == 0 { FIRST } else { REST };
        let kids: BTreeSet<char> = node.children.keys().copied().collect();
        if let Some(c) = class(alphabet, &kids) {
            let rest = MAX_LEN - depth - 1;
            if rest == 0 {
                alts.push(c);
            } else {
                alts.push(format!("{c}[a-z0-9_-]{{0,{rest}}}"));
            }
        }
        for (ch, child) in &node.children {
            let lit = if *ch == '-' {
                "-".to_string()
            } else {
                ch.to_string()
            };
            alts.push(format!("{lit}{}", complement(child, depth + 1)));
        }
    }
    let empty_ok = depth > 0 && !node.terminal;
    let body = if alts.len() == 1 && !empty_ok {
        return alts.pop().unwrap();
    } else {
        format!("(?:{})", alts.join("|"))
    };
    if empty_ok {
        format!("{body}?")
    } else {
        body
    }
}

/// An RE2 regex (no lookahead) matching exactly the plain user names
/// (`NAME_PATTERN`) that are not in `reserved`.
pub fn complement_regex(reserved: &[&str]) -> String {
    let mut root = Node::default();
    for name in reserved {
        let mut n = &mut root;
        for ch in name.chars() {
            n = n.children.entry(ch).or_default();
        }
        n.terminal = true;
    }
    format!("^{}$", complement(&root, 0))
}

/// The `coder_parameter.agent_user` regex: [`complement_regex`] of [`RESERVED`].
pub fn parameter_regex() -> String {
    complement_regex(RESERVED)
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

/// The regex a `validation.regex` expression yields: a literal, or
/// `trimspace(file("${path.module}/<name>"))` read from `templates/<name>`.
pub fn regex_value(root: &Path, expr: &hcl::Expression) -> Option<String> {
    use hcl::Expression as E;
    match expr {
        E::String(s) => Some(s.clone()),
        E::FuncCall(f) => f.args.iter().find_map(|a| regex_value(root, a)),
        E::TemplateExpr(t) => {
            let src = t.to_string();
            let name = src.rsplit('/').next()?.trim_matches('"');
            let text = std::fs::read_to_string(root.join("templates").join(name)).ok()?;
            Some(text.trim().to_string())
        }
        _ => None,
    }
}

/// Every place that encodes the agent user rules agrees with [`RESERVED`].
pub fn check(root: &Path) -> Vec<Finding> {
    let mut out = vec![];
    let want = expected();
    let want_regex = parameter_regex();

    // 1. coder_parameter.agent_user
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
                .find_map(|a| regex_value(root, a.expr()));
            if regex.as_deref() != Some(want_regex.as_str()) {
                out.push(Finding::new(
                    "agent-user",
                    &params,
                    Some("coder_parameter.agent_user.validation.regex"),
                    format!(
                        "expected the complement regex of harness::lint::agent_user::RESERVED \
                         ({} bytes; print it with `cargo test -p harness --lib print_agent_user_regex -- --ignored --nocapture`), found {}",
                        want_regex.len(),
                        match &regex {
                            Some(r) if r.len() > 80 => format!("a different regex of {} bytes", r.len()),
                            Some(r) => format!("{r:?}"),
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

    fn names_near_the_list() -> Vec<String> {
        // Every reserved name, its prefixes, one-char extensions and
        // one-char edits: the strings a trie complement gets wrong.
        let mut v = BTreeSet::new();
        for r in RESERVED {
            for i in 0..=r.len() {
                v.insert(r[..i].to_string());
            }
            for c in REST.chars() {
                v.insert(format!("{r}{c}"));
                v.insert(format!("{c}{r}"));
                for i in 0..r.len() {
                    let mut s: Vec<char> = r.chars().collect();
                    s[i] = c;
                    v.insert(s.into_iter().collect());
                }
            }
            v.insert(r.to_uppercase());
        }
        // Length bounds, and every one- and two-character string.
        for c in FIRST.chars().chain("0-A ".chars()) {
            v.insert(c.to_string());
            for d in REST.chars().chain("A .".chars()) {
                v.insert(format!("{c}{d}"));
            }
            v.insert(format!("{c}{}", "a".repeat(31)));
            v.insert(format!("{c}{}", "a".repeat(32)));
        }
        v.insert("nixbld33".into());
        v.insert("nixbld".repeat(6));
        v.into_iter().collect()
    }

    #[test]
    fn complement_regex_accepts_exactly_the_allowed_names() {
        let re = regex::Regex::new(&parameter_regex()).unwrap();
        let base = regex::Regex::new(NAME_PATTERN).unwrap();
        let names = names_near_the_list();
        assert!(names.len() > 50_000, "{}", names.len());
        let mut wrong = vec![];
        for n in &names {
            let want = base.is_match(n) && !RESERVED.contains(&n.as_str());
            if re.is_match(n) != want {
                wrong.push(n.clone());
            }
        }
        assert!(wrong.is_empty(), "regex disagrees on {wrong:?}");
        for r in RESERVED {
            assert!(!re.is_match(r), "{r} must be rejected");
        }
        for ok in [
            "coder", "alice", "dev", "_build", "a", "nixbld0", "roots", "gits",
        ] {
            assert!(re.is_match(ok), "{ok} must be accepted");
        }
    }

    #[test]
    fn complement_regex_is_re2_syntax() {
        // No lookaround, no backreferences: the constructs RE2 lacks.
        let re = parameter_regex();
        for bad in ["(?=", "(?!", "(?<=", "(?<!", "\\1"] {
            assert!(!re.contains(bad), "{bad}");
        }
    }

    /// Prints the regex to paste into `templates/parameters.tf`.
    #[test]
    #[ignore]
    fn print_agent_user_regex() {
        println!("{}", parameter_regex());
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
    fn a_small_list_gives_a_readable_regex() {
        let re = complement_regex(&["root", "ro"]);
        let re = regex::Regex::new(&re).unwrap();
        for (n, ok) in [
            ("root", false),
            ("ro", false),
            ("r", true),
            ("roo", true),
            ("roots", true),
            ("rooz", true),
            ("x", true),
        ] {
            assert_eq!(re.is_match(n), ok, "{n}");
        }
    }

    #[test]
    fn check_names_each_place_that_disagrees() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        std::fs::create_dir_all(root.join("templates/modules/bootstrap")).unwrap();
        std::fs::write(
            root.join("templates/parameters.tf"),
            "data \"coder_parameter\" \"agent_user\" {\n  validation {\n    regex = \"^[a-z_][a-z0-9_-]{0,31}$\"\n    error = \"x\"\n  }\n}\n",
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

    #[test]
    fn the_shipped_template_agrees() {
        let f = check(&crate::repo::root().unwrap());
        assert!(f.is_empty(), "{f:?}");
    }
}
