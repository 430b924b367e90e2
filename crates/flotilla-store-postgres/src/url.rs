//! Connection strings: `postgres://` and `postgresql://` URLs, or libpq `key=value` strings.
//!
//! A URL's query parameters that the driver knows (`sslmode`, `application_name`,
//! `options`, `connect_timeout`, `target_session_attrs`, ...) are applied by it. Any other
//! parameter is passed through to the server as a session setting, the way libpq's
//! `options=-c name=value` would set it: `?statement_timeout=5s&lock_timeout=1s`.
//! `fallback_application_name` names the connection when `application_name` does not.

/// The query parameters `tokio_postgres::Config` parses itself (tokio-postgres 0.7).
const DRIVER_PARAMS: &[&str] = &[
    "user",
    "password",
    "dbname",
    "options",
    "application_name",
    "sslmode",
    "sslnegotiation",
    "host",
    "hostaddr",
    "port",
    "connect_timeout",
    "tcp_user_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_retries",
    "target_session_attrs",
    "channel_binding",
    "load_balance_hosts",
];

/// A parsed connection string and the session settings its URL asked for.
pub(crate) struct Parsed {
    pub(crate) config: tokio_postgres::Config,
    /// `-c name=value` settings for the startup `options`, already escaped.
    pub(crate) settings: String,
}

/// Parses `url`; the error is a sentence for `invalid_argument`.
pub(crate) fn parse(url: &str) -> Result<Parsed, String> {
    let is_url = ["postgres://", "postgresql://"]
        .iter()
        .any(|p| url.starts_with(p));
    let (base, query) = match url.split_once('?') {
        Some((base, query)) if is_url => (base, query),
        _ => {
            let config = url
                .parse()
                .map_err(|e| format!("bad connection string: {e}"))?;
            return Ok(Parsed {
                config,
                settings: String::new(),
            });
        }
    };
    let mut kept: Vec<&str> = Vec::new();
    let mut settings = String::new();
    let mut fallback_name = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(raw_key)?;
        if DRIVER_PARAMS.contains(&key.as_str()) {
            kept.push(pair);
            continue;
        }
        let value = decode(raw_value)?;
        if key == "fallback_application_name" {
            fallback_name = Some(value);
            continue;
        }
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            return Err(format!("bad connection string: parameter {key:?}"));
        }
        settings.push_str(&format!(" -c {key}={}", escape(&value)));
    }
    let rebuilt = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let mut config: tokio_postgres::Config = rebuilt
        .parse()
        .map_err(|e| format!("bad connection string: {e}"))?;
    if let Some(name) = fallback_name
        && config.get_application_name().is_none()
    {
        config.application_name(name);
    }
    Ok(Parsed {
        config,
        settings: settings.trim().to_owned(),
    })
}

/// Percent-decodes a URL component.
fn decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad connection string: bad escape in {s:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("bad connection string: {s:?} is not UTF-8"))
}

/// Escapes a value for the startup `options` string, which PostgreSQL splits at spaces
/// unless a backslash precedes them.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if c == '\\' || c.is_whitespace() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_parameters_become_session_settings() {
        let p = parse(
            "postgresql://u@h:5433/db?sslmode=disable&statement_timeout=5s&search_path=a%2Cb%20c&application_name=x",
        )
        .expect("parses");
        assert_eq!(p.settings, r"-c statement_timeout=5s -c search_path=a,b\ c");
        assert_eq!(p.config.get_application_name(), Some("x"));
        assert_eq!(p.config.get_dbname(), Some("db"));
        assert_eq!(p.config.get_ports(), &[5433]);
    }

    #[test]
    fn plain_urls_and_key_value_strings_are_left_to_the_driver() {
        for url in [
            "postgres://u@h/db",
            "postgresql://u@h/db",
            "host=h user=u dbname=db",
        ] {
            let p = parse(url).expect(url);
            assert_eq!(p.settings, "");
            assert_eq!(p.config.get_dbname(), Some("db"), "{url}");
        }
    }

    #[test]
    fn fallback_name_and_bad_parameters() {
        let p = parse("postgres://h/db?fallback_application_name=fb").expect("parses");
        assert_eq!(p.config.get_application_name(), Some("fb"));
        let p = parse("postgres://h/db?application_name=a&fallback_application_name=fb")
            .expect("parses");
        assert_eq!(p.config.get_application_name(), Some("a"));
        assert!(parse("postgres://h/db?bad%20key=1").is_err());
        assert!(parse("postgres://h/db?x=%zz").is_err());
        assert!(parse("postgres://h/db?sslmode=sometimes").is_err());
    }
}
