//! Backend addresses written as PostgreSQL connection URIs, the form operators paste from
//! elsewhere: `postgres://user:password@host:port/database`.

use std::fmt;

/// A parsed backend connection URI.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BackendUri {
    /// Host name or IP address.
    pub host: String,
    /// TCP port (5432 when the URI names none).
    pub port: u16,
    /// Role the proxy logs in as.
    pub user: String,
    /// Password for that role; `None` for trust authentication.
    pub password: Option<String>,
    /// Database on that server.
    pub database: String,
}

/// Why a URI could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UriError {
    /// Not `postgres://` or `postgresql://`.
    #[error("backend URI must start with postgres:// or postgresql://")]
    Scheme,
    /// No user before `@`.
    #[error("backend URI must name a user (postgres://user:password@host:port/db)")]
    MissingUser,
    /// No host.
    #[error("backend URI must name a host")]
    MissingHost,
    /// No database path.
    #[error("backend URI must name a database (postgres://user@host:port/db)")]
    MissingDatabase,
    /// Port is not a number in 1..=65535.
    #[error("backend URI port {0:?} is not a valid port")]
    Port(String),
    /// A `%` escape that is not two hex digits or not UTF-8.
    #[error("backend URI has an invalid percent-escape")]
    Escape,
    /// Query parameters are not supported yet.
    #[error("backend URI query parameters ({0}) are not supported")]
    Query(String),
}

impl BackendUri {
    /// Parses `postgres[ql]://user[:password]@host[:port]/database`.
    pub fn parse(text: &str) -> Result<Self, UriError> {
        let rest = text
            .strip_prefix("postgres://")
            .or_else(|| text.strip_prefix("postgresql://"))
            .ok_or(UriError::Scheme)?;
        if let Some((_, query)) = rest.split_once('?') {
            return Err(UriError::Query(query.to_owned()));
        }
        let (credentials, location) = rest.rsplit_once('@').ok_or(UriError::MissingUser)?;
        let (user, password) = match credentials.split_once(':') {
            Some((user, password)) => (user, Some(percent_decode(password)?)),
            None => (credentials, None),
        };
        if user.is_empty() {
            return Err(UriError::MissingUser);
        }
        let (hostport, database) = location.split_once('/').ok_or(UriError::MissingDatabase)?;
        if database.is_empty() {
            return Err(UriError::MissingDatabase);
        }
        let (host, port) = split_host_port(hostport)?;
        Ok(Self {
            host,
            port,
            user: percent_decode(user)?,
            password,
            database: percent_decode(database)?,
        })
    }

    /// `host:port`, for connecting and for logs.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

fn split_host_port(hostport: &str) -> Result<(String, u16), UriError> {
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or(UriError::MissingHost)?;
        (host, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(UriError::MissingHost);
    }
    let port = match port {
        None => 5432,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(UriError::Port(p.to_owned())),
        },
    };
    Ok((host.to_owned(), port))
}

fn percent_decode(text: &str) -> Result<String, UriError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3).ok_or(UriError::Escape)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| UriError::Escape)?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| UriError::Escape)
}

impl fmt::Debug for BackendUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for BackendUri {
    /// Renders without the password: safe for logs and admin output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "postgres://{}@{}/{}",
            self.user,
            self.address(),
            self.database
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_uri() {
        let uri = BackendUri::parse("postgres://app:s%40cret@127.0.0.1:5433/app").unwrap();
        assert_eq!(uri.user, "app");
        assert_eq!(uri.password.as_deref(), Some("s@cret"));
        assert_eq!(uri.host, "127.0.0.1");
        assert_eq!(uri.port, 5433);
        assert_eq!(uri.database, "app");
        assert_eq!(uri.to_string(), "postgres://app@127.0.0.1:5433/app");
    }

    #[test]
    fn defaults_port_and_allows_no_password() {
        let uri = BackendUri::parse("postgresql://postgres@db.internal/main").unwrap();
        assert_eq!(uri.port, 5432);
        assert_eq!(uri.password, None);
    }

    #[test]
    fn parses_ipv6() {
        let uri = BackendUri::parse("postgres://u:p@[::1]:6000/d").unwrap();
        assert_eq!(uri.host, "::1");
        assert_eq!(uri.address(), "[::1]:6000");
    }

    #[test]
    fn rejects_bad_uris() {
        assert_eq!(BackendUri::parse("mysql://u@h/d"), Err(UriError::Scheme));
        assert_eq!(
            BackendUri::parse("postgres://h/d"),
            Err(UriError::MissingUser)
        );
        assert_eq!(
            BackendUri::parse("postgres://u@h"),
            Err(UriError::MissingDatabase)
        );
        assert_eq!(
            BackendUri::parse("postgres://u@h:0/d"),
            Err(UriError::Port("0".into()))
        );
        assert_eq!(
            BackendUri::parse("postgres://u@h:x/d"),
            Err(UriError::Port("x".into()))
        );
        assert_eq!(
            BackendUri::parse("postgres://u:%zz@h/d"),
            Err(UriError::Escape)
        );
        assert!(matches!(
            BackendUri::parse("postgres://u@h/d?sslmode=require"),
            Err(UriError::Query(_))
        ));
    }
}
