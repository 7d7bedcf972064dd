//! `%START_TIME%` rendering: UTC, Envoy's default `%Y-%m-%dT%H:%M:%S.%3fZ`, and the
//! strftime subset users write in `%START_TIME(...)%` plus Envoy's `%s` (epoch seconds)
//! and `%Nf` (N fractional digits, 1–9; `%f` alone is 9).

use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// Envoy's default: `2020-11-25T21:26:18.409Z`.
pub const DEFAULT_FORMAT: &str = "%Y-%m-%dT%H:%M:%S.%3fZ";

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];

/// A UTC instant split into calendar fields.
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    nanos: u32,
    epoch_secs: i64,
    /// Days since 1970-01-01 (a Thursday).
    days: i64,
}

fn civil(t: SystemTime) -> Civil {
    let (secs, nanos) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        // Before 1970: not a time a request starts at; clamp.
        Err(_) => (0, 0),
    };
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400) as u32;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month,
        day,
        hour: rem / 3600,
        minute: rem / 60 % 60,
        second: rem % 60,
        nanos,
        epoch_secs: secs,
        days,
    }
}

fn day_of_year(c: &Civil) -> u32 {
    const CUMULATIVE: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let leap = (c.year % 4 == 0 && c.year % 100 != 0) || c.year % 400 == 0;
    CUMULATIVE[(c.month - 1) as usize] + c.day + u32::from(leap && c.month > 2)
}

/// Renders `t` with `format` into `out`. Unknown specifiers are copied as written.
pub fn format_into(out: &mut String, t: SystemTime, format: &str) {
    let c = civil(t);
    let mut chars = format.chars().peekable();
    while let Some(ch) = chars.next() {
        if ch != '%' {
            out.push(ch);
            continue;
        }
        // `%3f`: a digit count before `f`.
        let digits = chars.peek().and_then(|d| d.to_digit(10));
        if let Some(n) = digits {
            let mut ahead = chars.clone();
            ahead.next();
            if ahead.peek() == Some(&'f') && (1..=9).contains(&n) {
                chars.next();
                chars.next();
                fraction(out, c.nanos, n);
                continue;
            }
        }
        let Some(spec) = chars.next() else {
            out.push('%');
            break;
        };
        // Writing to a String cannot fail.
        let _ = match spec {
            'Y' => write!(out, "{:04}", c.year),
            'y' => write!(out, "{:02}", c.year.rem_euclid(100)),
            'm' => write!(out, "{:02}", c.month),
            'd' => write!(out, "{:02}", c.day),
            'e' => write!(out, "{:>2}", c.day),
            'H' => write!(out, "{:02}", c.hour),
            'I' => write!(out, "{:02}", (c.hour + 11) % 12 + 1),
            'p' => write!(out, "{}", if c.hour < 12 { "AM" } else { "PM" }),
            'M' => write!(out, "{:02}", c.minute),
            'S' => write!(out, "{:02}", c.second),
            'j' => write!(out, "{:03}", day_of_year(&c)),
            's' => write!(out, "{}", c.epoch_secs),
            'f' => {
                fraction(out, c.nanos, 9);
                Ok(())
            }
            'b' | 'h' => write!(out, "{}", MONTHS[(c.month - 1) as usize]),
            'a' => write!(out, "{}", DAYS[c.days.rem_euclid(7) as usize]),
            'F' => write!(out, "{:04}-{:02}-{:02}", c.year, c.month, c.day),
            'T' => write!(out, "{:02}:{:02}:{:02}", c.hour, c.minute, c.second),
            'D' => write!(
                out,
                "{:02}/{:02}/{:02}",
                c.month,
                c.day,
                c.year.rem_euclid(100)
            ),
            'z' => write!(out, "+0000"),
            'Z' => write!(out, "UTC"),
            '%' => write!(out, "%"),
            other => write!(out, "%{other}"),
        };
    }
}

fn fraction(out: &mut String, nanos: u32, digits: u32) {
    let value = nanos / 10u32.pow(9 - digits);
    let _ = write!(out, "{:0width$}", value, width = digits as usize);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    fn render(t: SystemTime, f: &str) -> String {
        let mut s = String::new();
        format_into(&mut s, t, f);
        s
    }

    #[test]
    fn envoy_default_and_custom_formats() {
        // 2020-11-25T21:26:18.409Z, the Istio docs sample.
        let t = at(1_606_339_578, 409);
        assert_eq!(render(t, DEFAULT_FORMAT), "2020-11-25T21:26:18.409Z");
        assert_eq!(render(t, "%s"), "1606339578");
        assert_eq!(render(t, "%6f|%9f|%1f|%f"), "409000|409000000|4|409000000");
        assert_eq!(render(t, "%d/%b/%Y:%T %z"), "25/Nov/2020:21:26:18 +0000");
        assert_eq!(
            render(t, "%a %j %F %D %I%p %% %Q"),
            "Wed 330 2020-11-25 11/25/20 09PM % %Q"
        );
        assert_eq!(render(UNIX_EPOCH, "%F %T %a"), "1970-01-01 00:00:00 Thu");
        // Leap day and the end of a leap year.
        assert_eq!(render(at(951_782_400, 0), "%F %j"), "2000-02-29 060");
        assert_eq!(render(at(1_609_372_800, 0), "%F %j"), "2020-12-31 366");
        assert_eq!(render(t, "trailing %"), "trailing %");
    }
}
