//! Request parameters as Prometheus's HTTP API takes them: from the query string and, for POST,
//! a form body of at most `MAX_REQUEST_BODY` bytes (repeated keys such as `match[]` allowed); times as Unix seconds with a fraction
//! or RFC 3339; durations as seconds or Prometheus duration strings.

use axum::extract::{FromRequest, Request};
use axum::http::{Method, header};

use super::{ApiError, ErrorType, MAX_REQUEST_BODY};
use crate::model::parse_duration;

/// All parameters of a request, in order.
#[derive(Debug, Default)]
pub(crate) struct Params {
    pairs: Vec<(String, String)>,
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Params, ApiError> {
        let mut pairs: Vec<(String, String)> = match req.uri().query() {
            Some(q) => url::form_urlencoded::parse(q.as_bytes()).into_owned().collect(),
            None => Vec::new(),
        };
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if req.method() == Method::POST && is_form {
            let body = read_form(req).await?;
            pairs.extend(url::form_urlencoded::parse(&body).into_owned());
        }
        Ok(Params { pairs })
    }
}

/// A form body of at most [`MAX_REQUEST_BODY`] bytes; more is `413` (at once when the
/// `Content-Length` says so, else as soon as the body grows past it).
async fn read_form(req: Request) -> Result<axum::body::Bytes, ApiError> {
    use http_body_util::{BodyExt, LengthLimitError, Limited};
    let too_large = || ApiError {
        kind: ErrorType::TooLarge,
        message: format!("request body too large: the limit is {MAX_REQUEST_BODY} bytes"),
    };
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_REQUEST_BODY as u64) {
        return Err(too_large());
    }
    match Limited::new(req.into_body(), MAX_REQUEST_BODY).collect().await {
        Ok(body) => Ok(body.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(e) => {
            Err(ApiError { kind: ErrorType::BadData, message: format!("error parsing form values: {e}") })
        }
    }
}

impl Params {
    /// The first value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The first non-empty value of `key`.
    pub(crate) fn non_empty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }

    /// Every value of `key`.
    pub(crate) fn all(&self, key: &str) -> Vec<&str> {
        self.pairs.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
    }
}

/// `invalid parameter "name": err`, as a `bad_data` error.
pub(crate) fn invalid_param(name: &str, err: impl std::fmt::Display) -> ApiError {
    ApiError { kind: ErrorType::BadData, message: format!("invalid parameter {name:?}: {err}") }
}

/// The earliest and latest times the API accepts (Prometheus's `MinTime`/`MaxTime`).
pub(crate) const MIN_TIME: i64 = i64::MIN / 1000 + 62_135_596_801;
pub(crate) const MAX_TIME: i64 = i64::MAX / 1000 - 62_135_596_801;

/// Parses a time parameter into milliseconds.
pub(crate) fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(f) = s.parse::<f64>()
        && f.is_finite()
    {
        let secs = f.trunc();
        let frac = ((f - secs) * 1000.0).round();
        return Ok((secs as i64).saturating_mul(1000).saturating_add(frac as i64));
    }
    match s {
        "-292273086-05-16T16:47:06Z" => return Ok(MIN_TIME.saturating_mul(1000)),
        "292277025-08-18T07:12:54.999999999Z" => return Ok(MAX_TIME.saturating_mul(1000)),
        _ => {}
    }
    parse_rfc3339(s).ok_or_else(|| format!("cannot parse {s:?} to a valid timestamp"))
}

/// A time parameter with a default for when it is absent.
pub(crate) fn time_param(p: &Params, name: &str, default: i64) -> Result<i64, ApiError> {
    match p.non_empty(name) {
        None => Ok(default),
        Some(s) => parse_time(s).map_err(|e| invalid_param(name, e)),
    }
}

/// Parses a duration parameter (`15`, `1.5`, `5m`) into milliseconds.
pub(crate) fn parse_duration_ms(s: &str) -> Result<i64, String> {
    if let Ok(f) = s.parse::<f64>() {
        let ms = f * 1000.0;
        if !ms.is_finite() || ms > i64::MAX as f64 / 1e6 || ms < i64::MIN as f64 / 1e6 {
            return Err(format!("cannot parse {s:?} to a valid duration. It overflows int64"));
        }
        return Ok(ms as i64);
    }
    parse_duration(s)
        .map(|d| d.as_millis() as i64)
        .map_err(|_| format!("cannot parse {s:?} to a valid duration"))
}

/// The `limit` parameter: 0 (none) when absent.
pub(crate) fn limit_param(p: &Params) -> Result<usize, ApiError> {
    match p.non_empty("limit") {
        None => Ok(0),
        Some(s) => {
            let n: i64 = s.parse().map_err(|e| invalid_param("limit", e))?;
            usize::try_from(n).map_err(|_| invalid_param("limit", "limit must be non-negative"))
        }
    }
}

/// RFC 3339 with optional fraction and `Z` or `±hh:mm` offset, to milliseconds.
fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, sec) =
        (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut ms = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let digits = &s[start..i.min(start + 3)];
        ms = digits.parse::<i64>().ok()? * 10i64.pow(3 - digits.len() as u32);
    }
    let offset_min = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        c @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let v = num(i + 1..i + 3)? * 60 + num(i + 4..i + 6)?;
            if *c == b'-' { -v } else { v }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    Some(secs * 1000 + ms)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_like_prometheus() {
        assert_eq!(parse_time("1700000000"), Ok(1_700_000_000_000));
        assert_eq!(parse_time("1700000000.123"), Ok(1_700_000_000_123));
        assert_eq!(parse_time("1.5"), Ok(1500));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Ok(1_700_000_000_000));
        assert_eq!(parse_time("2023-11-14T22:13:20.5Z"), Ok(1_700_000_000_500));
        assert_eq!(parse_time("2023-11-15T00:13:20+02:00"), Ok(1_700_000_000_000));
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Ok(0));
        assert!(parse_time("yesterday").is_err());
        assert_eq!(parse_duration_ms("15"), Ok(15_000));
        assert_eq!(parse_duration_ms("0.5"), Ok(500));
        assert_eq!(parse_duration_ms("1m"), Ok(60_000));
        assert!(parse_duration_ms("1x").is_err());
    }
}
