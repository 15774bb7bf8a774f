//! When a recurring schedule fires: a cron expression (five fields, or six with seconds first)
//! read in an IANA time zone. Parsed with `croner`; time zones from `chrono-tz`, so a daily 09:00
//! in `Europe/Paris` follows the clock change.
use chrono::{TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;

/// Longest cron expression accepted.
const MAX_CRON: usize = 256;

/// A parsed cron expression in its time zone.
#[derive(Debug, Clone)]
pub struct Cadence {
    cron: Cron,
    tz: Tz,
}

/// A cron expression or time zone that cannot stand: the field and why.
#[derive(Debug, Clone, PartialEq)]
pub struct CadenceError {
    /// `cron` or `timezone`.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

impl Cadence {
    /// Parses `cron` in `timezone` (default UTC); refuses expressions that never fire.
    pub fn parse(cron: &str, timezone: Option<&str>) -> Result<Cadence, CadenceError> {
        let bad = |field, message: String| CadenceError { field, message };
        let fields = cron.split_whitespace().count();
        if cron.len() > MAX_CRON || !(5..=6).contains(&fields) {
            return Err(bad(
                "cron",
                format!("cron must have 5 fields (minute hour day month weekday) or 6 with seconds first, at most {MAX_CRON} characters; got {fields} field(s)"),
            ));
        }
        let parsed = Cron::new(cron)
            .with_seconds_optional()
            .parse()
            .map_err(|e| bad("cron", format!("cron `{cron}`: {e}")))?;
        let tz: Tz = match timezone {
            None => Tz::UTC,
            Some(name) => name.parse().map_err(|_| {
                bad(
                    "timezone",
                    format!("unknown time zone `{name}` (an IANA name such as Europe/Paris)"),
                )
            })?,
        };
        let c = Cadence { cron: parsed, tz };
        if c.next_after(Utc::now().timestamp_millis()).is_none() {
            return Err(bad("cron", format!("cron `{cron}` never fires")));
        }
        Ok(c)
    }

    /// The time zone's name.
    pub fn timezone(&self) -> &'static str {
        self.tz.name()
    }

    /// The first tick strictly after `ms` (Unix ms), if there is one.
    pub fn next_after(&self, ms: i64) -> Option<i64> {
        let at = self.tz.timestamp_millis_opt(ms).single()?;
        let next = self.cron.find_next_occurrence(&at, false).ok()?;
        Some(next.timestamp_millis())
    }
}

/// Unix ms as RFC 3339 (UTC).
pub fn rfc3339(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_and_six_fields_in_a_time_zone() {
        let t0 = Utc
            .with_ymd_and_hms(2026, 3, 28, 12, 0, 0)
            .unwrap()
            .timestamp_millis();
        let every_second = Cadence::parse("* * * * * *", None).unwrap();
        assert_eq!(every_second.next_after(t0), Some(t0 + 1000));
        let nine = Cadence::parse("0 9 * * *", Some("Europe/Paris")).unwrap();
        // 09:00 in Paris is 08:00 UTC before the clock change (29 March 2026), 07:00 after.
        let first = nine.next_after(t0).unwrap();
        assert_eq!(rfc3339(first), "2026-03-29T07:00:00.000Z");
        let before = Utc
            .with_ymd_and_hms(2026, 3, 27, 12, 0, 0)
            .unwrap()
            .timestamp_millis();
        assert_eq!(
            rfc3339(nine.next_after(before).unwrap()),
            "2026-03-28T08:00:00.000Z"
        );
    }

    #[test]
    fn bad_expressions_and_zones_are_refused() {
        for bad in [
            "",
            "* * * *",
            "* * * * * * *",
            "61 * * * *",
            "x y z a b",
            "0 0 30 2 *",
        ] {
            assert_eq!(
                Cadence::parse(bad, None).unwrap_err().field,
                "cron",
                "{bad}"
            );
        }
        assert_eq!(
            Cadence::parse("* * * * *", Some("Mars/Olympus"))
                .unwrap_err()
                .field,
            "timezone"
        );
    }
}
