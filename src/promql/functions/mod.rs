//! PromQL's function library: the catalog ([`Func`]), the per-sample maths of instant-vector
//! functions, range-window functions ([`range`]), classic-histogram maths ([`histogram`]) and
//! the numeric helpers they share ([`stats`]). How functions are applied to whole vectors over
//! all steps is the evaluator's business.

mod catalog;
pub(crate) mod go;
pub(crate) mod histogram;
pub(crate) mod range;
pub(crate) mod rollup;
pub mod stats;

pub use catalog::{Func, FuncInfo};

/// The per-sample function of a simple instant-vector function (`abs`, `sqrt`, `sin`, …), or
/// `None` for functions that are not element-wise.
pub(crate) fn elementwise(func: Func) -> Option<fn(f64) -> f64> {
    Some(match func {
        Func::Abs => f64::abs,
        Func::Ceil => f64::ceil,
        Func::Floor => f64::floor,
        Func::Exp => f64::exp,
        Func::Sqrt => f64::sqrt,
        Func::Ln => f64::ln,
        Func::Log2 => f64::log2,
        Func::Log10 => f64::log10,
        Func::Sin => f64::sin,
        Func::Cos => f64::cos,
        Func::Tan => f64::tan,
        Func::Asin => f64::asin,
        Func::Acos => f64::acos,
        Func::Atan => f64::atan,
        Func::Sinh => f64::sinh,
        Func::Cosh => f64::cosh,
        Func::Tanh => f64::tanh,
        Func::Asinh => f64::asinh,
        Func::Acosh => f64::acosh,
        Func::Atanh => f64::atanh,
        Func::Rad => |v| v * std::f64::consts::PI / 180.0,
        Func::Deg => |v| v * 180.0 / std::f64::consts::PI,
        Func::Sgn => |v| {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                v
            }
        },
        Func::DaysInMonth => |v| date_part(v, DatePart::DaysInMonth),
        Func::DayOfMonth => |v| date_part(v, DatePart::DayOfMonth),
        Func::DayOfWeek => |v| date_part(v, DatePart::DayOfWeek),
        Func::DayOfYear => |v| date_part(v, DatePart::DayOfYear),
        Func::Hour => |v| date_part(v, DatePart::Hour),
        Func::Minute => |v| date_part(v, DatePart::Minute),
        Func::Month => |v| date_part(v, DatePart::Month),
        Func::Year => |v| date_part(v, DatePart::Year),
        _ => return None,
    })
}

/// Whether a function with no arguments defaults to the evaluation time (`hour()`).
pub(crate) fn is_date_function(func: Func) -> bool {
    matches!(
        func,
        Func::DaysInMonth
            | Func::DayOfMonth
            | Func::DayOfWeek
            | Func::DayOfYear
            | Func::Hour
            | Func::Minute
            | Func::Month
            | Func::Year
    )
}

#[derive(Clone, Copy)]
enum DatePart {
    DaysInMonth,
    DayOfMonth,
    DayOfWeek,
    DayOfYear,
    Hour,
    Minute,
    Month,
    Year,
}

/// A calendar field (UTC) of the Unix time `secs` (truncated to whole seconds, as Go does).
fn date_part(secs: f64, part: DatePart) -> f64 {
    let secs = secs as i64;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    const CUM: [i64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let v = match part {
        DatePart::Hour => sod / 3600,
        DatePart::Minute => sod % 3600 / 60,
        DatePart::Year => y,
        DatePart::Month => m,
        DatePart::DayOfMonth => d,
        // 1970-01-01 was a Thursday (4).
        DatePart::DayOfWeek => (days + 4).rem_euclid(7),
        DatePart::DayOfYear => CUM[(m - 1) as usize] + d + i64::from(leap && m > 2),
        DatePart::DaysInMonth => match m {
            2 if leap => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        },
    };
    v as f64
}

/// Year, month (1-12), day (1-31) of a day count since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_fields() {
        // 2024-02-29T13:45:00Z
        let t = 1_709_214_300.0;
        assert_eq!(date_part(t, DatePart::Year), 2024.0);
        assert_eq!(date_part(t, DatePart::Month), 2.0);
        assert_eq!(date_part(t, DatePart::DayOfMonth), 29.0);
        assert_eq!(date_part(t, DatePart::DaysInMonth), 29.0);
        assert_eq!(date_part(t, DatePart::DayOfYear), 60.0);
        assert_eq!(date_part(t, DatePart::DayOfWeek), 4.0);
        assert_eq!(date_part(t, DatePart::Hour), 13.0);
        assert_eq!(date_part(t, DatePart::Minute), 45.0);
        assert_eq!(date_part(-1.0, DatePart::Year), 1969.0);
    }
}
