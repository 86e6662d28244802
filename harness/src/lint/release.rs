//! Lint `nixos-release`: the NixOS release every workspace boots
//! (`nixos_release` in `templates/variables.tf`) against NixOS's support
//! calendar, on the day the gate runs.
//!
//! The calendar (stated in every release announcement, e.g. nixos-homepage
//! `blog/announcements/2026-05-30_nixos-26.05.md`: "bugfixes and security
//! updates for seven months (up until 2026-12-31)"): `YY.05` is supported
//! until 31 December of `YY`, `YY.11` until 30 June of `YY+1`. Releases ship
//! at the end of May and November. An unsupported release loses its AMIs:
//! NixOS/amis drops it from the upload matrix, deprecates every image 90
//! days after upload and deregisters deprecated images
//! (`upload-ami/src/upload_ami/upload_ami.py`, `delete_deprecated_images.py`),
//! so the template's `data "aws_ami"` finds nothing and every plan fails.
//!
//! [`verdict`] is pure (release + today): supported → [`Verdict::Ok`];
//! within [`WARN_DAYS`] of the end of life → [`Verdict::Warn`]; past it, or
//! not released yet → [`Verdict::Fail`]. Warnings and failures name the
//! release to move to: the newest one released by the calendar. The gate
//! and `harness lint` run it with today's date, or `HARNESS_TODAY`
//! (`YYYY-MM-DD`) to see what the gate will say on another day.

use std::path::Path;

use time::{Date, Month};

use crate::template::ami;

/// Check name in the gate and `harness lint`.
pub const CHECK: &str = "nixos-release";
/// Warn from this many days before the end of life.
pub const WARN_DAYS: i64 = 30;
/// `YYYY-MM-DD`: the day the check assumes instead of today.
pub const TODAY_ENV: &str = "HARNESS_TODAY";

/// A NixOS release, `YY.05` or `YY.11`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Release {
    /// Two-digit year (26 for 26.05).
    pub yy: u8,
    /// 5 or 11.
    pub month: u8,
}

impl Release {
    /// `"26.05"` → 26.05; anything but `YY.05`/`YY.11` is an error naming it.
    pub fn parse(s: &str) -> Result<Release, String> {
        let bad = || {
            format!("`{s}` is not a NixOS release: expected YY.05 or YY.11 (NixOS releases twice a year, e.g. 26.05)")
        };
        let (y, m) = s.split_once('.').ok_or_else(bad)?;
        if y.len() != 2 || m.len() != 2 || !(y.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let yy: u8 = y.parse().map_err(|_| bad())?;
        let month: u8 = m.parse().map_err(|_| bad())?;
        if month != 5 && month != 11 {
            return Err(bad());
        }
        Ok(Release { yy, month })
    }

    fn year(self) -> i32 {
        2000 + i32::from(self.yy)
    }

    /// The last day NixOS supports it: 31 Dec YY for YY.05, 30 Jun YY+1 for YY.11.
    pub fn end_of_life(self) -> Date {
        if self.month == 5 {
            date(self.year(), Month::December, 31)
        } else {
            date(self.year() + 1, Month::June, 30)
        }
    }

    /// When it ships by the calendar (the end of its month; 26.05 shipped
    /// on 30 May 2026, 25.11 on 30 November 2025).
    pub fn release_day(self) -> Date {
        if self.month == 5 {
            date(self.year(), Month::May, 31)
        } else {
            date(self.year(), Month::November, 30)
        }
    }

    /// The release after this one.
    pub fn next(self) -> Release {
        if self.month == 5 {
            Release {
                yy: self.yy,
                month: 11,
            }
        } else {
            Release {
                yy: self.yy + 1,
                month: 5,
            }
        }
    }

    /// The newest release shipped on or before `today` by the calendar.
    pub fn newest_released(today: Date) -> Release {
        let yy = u8::try_from(today.year().clamp(2000, 2099) - 2000).unwrap_or(0);
        let mut r = Release { yy, month: 11 };
        while r.release_day() > today {
            r = r.previous();
        }
        r
    }

    fn previous(self) -> Release {
        if self.month == 11 {
            Release {
                yy: self.yy,
                month: 5,
            }
        } else {
            Release {
                yy: self.yy.saturating_sub(1),
                month: 11,
            }
        }
    }
}

impl std::fmt::Display for Release {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:02}.{:02}", self.yy, self.month)
    }
}

fn date(y: i32, m: Month, d: u8) -> Date {
    Date::from_calendar_date(y, m, d).expect("a valid calendar date")
}

/// What the calendar says about a release on a day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Supported for more than [`WARN_DAYS`] days.
    Ok(String),
    /// Supported, but its end of life is at most [`WARN_DAYS`] days away.
    Warn(String),
    /// Past its end of life, not released yet, or not a release.
    Fail(String),
}

impl Verdict {
    pub fn message(&self) -> &str {
        match self {
            Verdict::Ok(m) | Verdict::Warn(m) | Verdict::Fail(m) => m,
        }
    }

    /// As a gate row.
    pub fn status(&self) -> crate::report::Status {
        use crate::report::Status;
        match self {
            Verdict::Ok(_) => Status::Passed,
            Verdict::Warn(m) => Status::Warned(m.clone()),
            Verdict::Fail(m) => Status::Failed(m.clone()),
        }
    }
}

/// How to see whether a release's official AMIs exist.
fn ami_query(r: Release) -> String {
    format!(
        "aws ec2 describe-images --owners {} --filters Name=name,Values={}",
        ami::NIXOS_OWNER,
        ami::name_pattern(&r.to_string())
    )
}

/// The release to move to from `r` on `today`: the newest shipped one, or
/// (when `r` is already the newest) the next.
pub fn move_to(r: Release, today: Date) -> Release {
    let newest = Release::newest_released(today);
    if newest > r {
        newest
    } else {
        r.next()
    }
}

/// The verdict on `release` (`nixos_release`'s value) on `today`.
pub fn verdict(release: &str, today: Date) -> Verdict {
    let r = match Release::parse(release) {
        Ok(r) => r,
        Err(e) => return Verdict::Fail(format!("nixos_release: {e}")),
    };
    let eol = r.end_of_life();
    let to = move_to(r, today);
    let how = format!(
        "move nixos_release (templates/variables.tf) to \"{to}\" once `{}` lists images",
        ami_query(to)
    );
    if r.release_day() > today {
        return Verdict::Fail(format!(
            "NixOS {r} is not released yet on {today} (due about {}): it has no AMIs, so every plan fails; use {} (`{}`)",
            r.release_day(),
            Release::newest_released(today),
            ami_query(Release::newest_released(today))
        ));
    }
    let days = (eol - today).whole_days();
    if days < 0 {
        Verdict::Fail(format!(
            "NixOS {r} reached its end of life on {eol} ({} days before {today}): NixOS/amis stopped uploading it and deregisters images 90 days after upload, so the AMI lookup finds nothing; {how}",
            -days
        ))
    } else if days <= WARN_DAYS {
        Verdict::Warn(format!(
            "NixOS {r} reaches its end of life on {eol}, in {days} days: its AMIs disappear after that; {how}"
        ))
    } else {
        Verdict::Ok(format!(
            "NixOS {r} is supported until {eol} ({days} days from {today})"
        ))
    }
}

/// Today (UTC), or [`TODAY_ENV`] when set; a malformed value is an error
/// naming it.
pub fn today() -> Result<Date, String> {
    match std::env::var(TODAY_ENV) {
        Ok(v) if !v.is_empty() => parse_date(&v)
            .ok_or_else(|| format!("{TODAY_ENV}={v:?}: expected a date like 2026-12-06")),
        _ => Ok(time::OffsetDateTime::now_utc().date()),
    }
}

/// `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Option<Date> {
    let mut it = s.split('-');
    let (y, m, d) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let month = Month::try_from(m.parse::<u8>().ok()?).ok()?;
    Date::from_calendar_date(y.parse().ok()?, month, d.parse().ok()?).ok()
}

/// The verdict on the repository's `nixos_release` default on `today`.
pub fn check(root: &Path, today: Date) -> Verdict {
    match ami::release(root) {
        Ok(r) => verdict(&r, today),
        Err(e) => Verdict::Fail(format!("{e:#}")),
    }
}

/// [`check`] on [`today`].
pub fn check_today(root: &Path) -> Verdict {
    match today() {
        Ok(t) => check(root, t),
        Err(e) => Verdict::Fail(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Date {
        parse_date(s).unwrap()
    }

    #[test]
    fn the_calendar_of_both_kinds_of_release() {
        let r = Release::parse("26.05").unwrap();
        assert_eq!(r.end_of_life(), d("2026-12-31"));
        assert_eq!(r.next().to_string(), "26.11");
        let r = Release::parse("26.11").unwrap();
        assert_eq!(r.end_of_life(), d("2027-06-30"));
        assert_eq!(r.next().to_string(), "27.05");
        assert_eq!(
            Release::parse("25.05").unwrap().end_of_life(),
            d("2025-12-31")
        );
        for bad in ["25.5", "25.06", "latest", "2505", "25.05.1", "a5.05", ""] {
            assert!(Release::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Release::newest_released(d("2026-12-06")).to_string(),
            "26.11"
        );
        assert_eq!(
            Release::newest_released(d("2026-11-29")).to_string(),
            "26.05"
        );
        assert_eq!(
            Release::newest_released(d("2026-05-31")).to_string(),
            "26.05"
        );
        assert_eq!(
            Release::newest_released(d("2026-05-30")).to_string(),
            "25.11"
        );
        assert_eq!(
            Release::newest_released(d("2027-01-15")).to_string(),
            "26.11"
        );
    }

    #[test]
    fn supported_more_than_30_days_is_ok() {
        let v = verdict("26.05", d("2026-11-30"));
        assert!(matches!(v, Verdict::Ok(_)), "{v:?}");
        assert!(v.message().contains("2026-12-31"), "{v:?}");
        assert!(matches!(verdict("26.11", d("2026-12-06")), Verdict::Ok(_)));
    }

    /// The template's default on the day this was written: 26.05 ends in 25 days.
    #[test]
    fn within_30_days_warns_and_names_the_release_to_move_to() {
        let v = verdict("26.05", d("2026-12-06"));
        let Verdict::Warn(m) = &v else {
            panic!("{v:?}")
        };
        for want in [
            "26.05",
            "2026-12-31",
            "in 25 days",
            "\"26.11\"",
            "nixos/26.11.*",
            "427812963091",
        ] {
            assert!(m.contains(want), "{want} missing: {m}");
        }
        // The first warning day and the last supported day.
        assert!(matches!(
            verdict("26.05", d("2026-12-01")),
            Verdict::Warn(_)
        ));
        assert!(matches!(verdict("26.05", d("2026-11-30")), Verdict::Ok(_)));
        let last = verdict("26.05", d("2026-12-31"));
        assert!(matches!(last, Verdict::Warn(_)) && last.message().contains("in 0 days"));
        // A YY.11 release warns in June of the next year.
        let v = verdict("26.11", d("2027-06-10"));
        assert!(
            matches!(v, Verdict::Warn(_)) && v.message().contains("\"27.05\""),
            "{v:?}"
        );
    }

    #[test]
    fn past_end_of_life_fails_and_names_the_release_to_move_to() {
        let v = verdict("26.05", d("2027-01-01"));
        let Verdict::Fail(m) = &v else {
            panic!("{v:?}")
        };
        assert!(m.contains("2026-12-31") && m.contains("\"26.11\""), "{m}");
        // The template's old default, today: long gone, move to the newest.
        let v = verdict("25.05", d("2026-12-06"));
        let Verdict::Fail(m) = &v else {
            panic!("{v:?}")
        };
        assert!(
            m.contains("2025-12-31") && m.contains("340 days") && m.contains("\"26.11\""),
            "{m}"
        );
        // A YY.11 past its end of life: the newest release by then.
        let v = verdict("25.11", d("2026-07-02"));
        assert!(
            matches!(&v, Verdict::Fail(m) if m.contains("\"26.05\"")),
            "{v:?}"
        );
    }

    #[test]
    fn an_unreleased_or_malformed_release_fails() {
        let v = verdict("27.05", d("2026-12-06"));
        assert!(
            matches!(&v, Verdict::Fail(m) if m.contains("not released yet") && m.contains("26.11")),
            "{v:?}"
        );
        let v = verdict("26.06", d("2026-12-06"));
        assert!(
            matches!(&v, Verdict::Fail(m) if m.contains("YY.05 or YY.11")),
            "{v:?}"
        );
    }

    #[test]
    fn verdicts_become_gate_rows() {
        use crate::report::Status;
        assert_eq!(Verdict::Ok("x".into()).status(), Status::Passed);
        assert_eq!(
            Verdict::Warn("w".into()).status(),
            Status::Warned("w".into())
        );
        assert_eq!(
            Verdict::Fail("f".into()).status(),
            Status::Failed("f".into())
        );
    }

    #[test]
    fn dates_parse_strictly() {
        assert_eq!(parse_date("2026-12-06"), Some(d("2026-12-06")));
        for bad in ["2026-12-6", "06.12.2026", "2026-13-01", "2026-02-30", "x"] {
            assert!(parse_date(bad).is_none(), "{bad}");
        }
    }

    /// The repository's default, read from templates/variables.tf (the
    /// gate's input), on the day this was written and past its end of life.
    #[test]
    fn the_shipped_default_is_checked() {
        let root = crate::repo::root().unwrap();
        let release = ami::release(&root).unwrap();
        assert!(Release::parse(&release).is_ok(), "{release}");
        assert!(!matches!(check(&root, d("2026-12-06")), Verdict::Fail(_)));
        let eol = Release::parse(&release).unwrap().end_of_life();
        let after = eol.next_day().unwrap();
        assert!(matches!(check(&root, after), Verdict::Fail(_)));
    }
}
