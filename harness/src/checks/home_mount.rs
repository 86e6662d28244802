//! Home mount: `/home` is a mount of the HOME DISK (identified by the
//! disk's serial, not merely "some mount"), with the expected filesystem,
//! and the user's home directory is on it and owned by the user.

use crate::machine::instance::Instance;
use crate::machine::probe::Probe;

use super::{Evidence, Verdict};

/// Shell that prints `<fstype> <serial> <source>` for /home: it finds the
/// /home entry in mountinfo, maps its major:minor to the block device
/// (or its parent, for a partition) and reads the serial the way both
/// virtio (`serial`) and EC2 NVMe (`device/serial`) expose it.
pub const PROBE_HOME: &str = r#"line=$(awk '$5=="/home"' /proc/self/mountinfo | tail -n 1)
[ -n "$line" ] || { echo "none - -"; exit 0; }
majmin=$(echo "$line" | awk '{print $3}')
fstype=$(echo "$line" | awk '{for(i=7;i<=NF;i++) if($i=="-"){print $(i+1); exit}}')
src=$(echo "$line" | awk '{for(i=7;i<=NF;i++) if($i=="-"){print $(i+2); exit}}')
dev=$(readlink -f /sys/dev/block/$majmin 2>/dev/null)
serial=-
for d in "$dev" "$(dirname "$dev")"; do
  for f in "$d/serial" "$d/device/serial"; do
    if [ -r "$f" ]; then serial=$(tr -d ' \n' < "$f"); break 2; fi
  done
done
echo "$fstype $serial $src""#;

pub async fn check(inst: &dyn Instance, user: &str, fs_type: &str) -> anyhow::Result<Verdict> {
    let expected_serial = inst.home_disk_serial().to_string();
    let v = Verdict::new(
        "home mount",
        format!("/home mounted from the home disk (serial {expected_serial}) as {fs_type}; /home/{user} on it, owned by {user}"),
    )
    .logs(Some(inst.artifacts().serial_log.clone()));
    let probe: &dyn Probe = inst.probe();
    let out = probe
        .exec(PROBE_HOME, crate::machine::probe::DEFAULT_TIMEOUT)
        .await?;
    let v = v.with(Evidence {
        how: "probe: /home in /proc/self/mountinfo → /sys/dev/block/MAJ:MIN → serial".into(),
        output: out.stdout.trim().to_string(),
    });
    let parts: Vec<&str> = out.stdout.split_whitespace().collect();
    let (fstype, serial, src) = match parts.as_slice() {
        [a, b, c, ..] => (*a, *b, *c),
        _ => return Ok(v.fail(format!("unreadable probe output: {:?}", out.stdout))),
    };
    if fstype == "none" {
        return Ok(v.fail("/home is not a mount point (it lives on the root filesystem)"));
    }
    // EC2 NVMe serials drop the dash: vol0abc… for vol-0abc….
    let norm = |s: &str| s.replace('-', "");
    if norm(serial) != norm(&expected_serial) {
        return Ok(v.fail(format!(
            "/home is a {fstype} mount of {src} (serial {serial}), not the home disk"
        )));
    }
    if fstype != fs_type {
        return Ok(v.fail(format!(
            "/home is the home disk but its filesystem is {fstype}"
        )));
    }
    let own = probe
        .exec(
            &format!(
                "d=/home/{u}; [ -d \"$d\" ] || {{ echo missing; exit 1; }}; echo $(stat -c '%U %d' \"$d\") $(stat -c %d /home)",
                u = crate::machine::probe::shell_quote(user)
            ),
            crate::machine::probe::DEFAULT_TIMEOUT,
        )
        .await?;
    let v = v.with(&own);
    let fields: Vec<&str> = own.stdout.split_whitespace().collect();
    match fields.as_slice() {
        ["missing", ..] | [] => Ok(v.fail(format!("/home/{user} does not exist"))),
        [owner, dev, home_dev, ..] if *owner == user && dev == home_dev => {
            Ok(v.pass(format!("/home is {fstype} on {src} (serial {serial}); /home/{user} owned by {user}")))
        }
        [owner, dev, home_dev, ..] if dev != home_dev => Ok(v.fail(format!(
            "/home/{user} (owner {owner}) is on device {dev}, not on the home disk (device {home_dev})"
        ))),
        [owner, ..] => Ok(v.fail(format!("/home/{user} is on the home disk but owned by {owner}"))),
    }
}

/// Write a marker file into the user's home (for the stop/start scenario).
pub async fn write_marker(
    inst: &dyn Instance,
    user: &str,
    content: &str,
) -> anyhow::Result<String> {
    let path = format!("/home/{user}/.harness-marker");
    inst.probe()
        .succeed(&format!(
            "printf '%s' {c} > {p} && sync",
            c = crate::machine::probe::shell_quote(content),
            p = crate::machine::probe::shell_quote(&path)
        ))
        .await?;
    Ok(path)
}

/// The marker survived: same content after stop/start.
pub async fn marker_intact(
    inst: &dyn Instance,
    path: &str,
    content: &str,
) -> anyhow::Result<Verdict> {
    let v = Verdict::new(
        "home data survives stop/start",
        format!("{path} still contains {content:?}"),
    );
    let out = inst
        .probe()
        .exec(
            &format!("cat {}", crate::machine::probe::shell_quote(path)),
            crate::machine::probe::DEFAULT_TIMEOUT,
        )
        .await?;
    let v = v.with(&out);
    if out.status == 0 && out.stdout == content {
        Ok(v.pass("the file and its content are there"))
    } else {
        Ok(v.fail(format!("exit {}, content {:?}", out.status, out.stdout)))
    }
}
