//! libiscsi-style URLs: `iscsi://[user[%password]@]host[:port]/iqn/lun`.

use alloc::string::String;
use core::fmt;

/// The well-known iSCSI port.
pub const DEFAULT_PORT: u16 = 3260;

/// A parsed iSCSI URL. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct IscsiUrl {
    pub user: Option<String>,
    pub password: Option<String>,
    pub host: String,
    pub port: u16,
    pub target: String,
    pub lun: u16,
}

impl fmt::Debug for IscsiUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IscsiUrl")
            .field("user", &self.user)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("target", &self.target)
            .field("lun", &self.lun)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlError {
    Scheme,
    Host,
    Port,
    Target,
    Lun,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            UrlError::Scheme => "it must start with iscsi://",
            UrlError::Host => "the host is missing",
            UrlError::Port => "the port is not a number from 1 to 65535",
            UrlError::Target => "the target IQN is missing",
            UrlError::Lun => "the LUN is missing or not a number",
        };
        write!(
            f,
            "bad iSCSI URL: {what} (expected iscsi://[user%password@]host[:port]/iqn/lun)"
        )
    }
}

/// Splits `host[:port]` (IPv6 in brackets).
pub fn split_host_port(s: &str) -> Result<(String, u16), UrlError> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or(UrlError::Host)?;
        (h, after.strip_prefix(':'))
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err(UrlError::Host);
    }
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or(UrlError::Port)?,
        None => DEFAULT_PORT,
    };
    Ok((host.into(), port))
}

/// A portal from a `TargetAddress` value: `host[:port][,tpgt]`
/// (RFC 7143 §13.8; IPv6 hosts in brackets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Portal {
    pub host: String,
    pub port: u16,
    pub tpgt: Option<u16>,
}

/// Parses a `TargetAddress` value.
pub fn parse_portal(s: &str) -> Result<Portal, UrlError> {
    let (addr, tpgt) = match s.rsplit_once(',') {
        Some((a, t)) => (a, Some(t.parse::<u16>().map_err(|_| UrlError::Port)?)),
        None => (s, None),
    };
    let (host, port) = split_host_port(addr)?;
    Ok(Portal { host, port, tpgt })
}

impl IscsiUrl {
    pub fn parse(s: &str) -> Result<Self, UrlError> {
        let rest = s.strip_prefix("iscsi://").ok_or(UrlError::Scheme)?;
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((a, r)) => (Some(a), r),
            None => (None, rest),
        };
        let (user, password) = match auth {
            Some(a) => match a.split_once('%') {
                Some((u, p)) => (Some(u.into()), Some(p.into())),
                None => (Some(a.into()), None),
            },
            None => (None, None),
        };
        let (hostport, path) = rest.split_once('/').ok_or(UrlError::Target)?;
        let (host, port) = split_host_port(hostport)?;
        let (target, lun) = path.rsplit_once('/').ok_or(UrlError::Lun)?;
        if target.is_empty() {
            return Err(UrlError::Target);
        }
        let lun = lun.parse::<u16>().map_err(|_| UrlError::Lun)?;
        Ok(IscsiUrl {
            user,
            password,
            host,
            port,
            target: target.into(),
            lun,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = IscsiUrl::parse("iscsi://alice%s3cret@127.0.0.1:3261/iqn.2026-11.keel:t1/1")
            .expect("url");
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.password.as_deref(), Some("s3cret"));
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 3261));
        assert_eq!((u.target.as_str(), u.lun), ("iqn.2026-11.keel:t1", 1));
        assert!(!alloc::format!("{u:?}").contains("s3cret"));
        let u = IscsiUrl::parse("iscsi://[::1]/iqn.x:y/0").expect("v6");
        assert_eq!((u.host.as_str(), u.port), ("::1", 3260));
        assert_eq!(IscsiUrl::parse("http://x/y/1"), Err(UrlError::Scheme));
        assert_eq!(IscsiUrl::parse("iscsi://h:0/t/1"), Err(UrlError::Port));
        assert_eq!(IscsiUrl::parse("iscsi://h/t/x"), Err(UrlError::Lun));
        assert_eq!(IscsiUrl::parse("iscsi://h"), Err(UrlError::Target));
    }

    #[test]
    fn portals() {
        let p = parse_portal("10.0.0.2:3261,7").expect("v4");
        assert_eq!(
            (p.host.as_str(), p.port, p.tpgt),
            ("10.0.0.2", 3261, Some(7))
        );
        let p = parse_portal("[fe80::1]:3260,1").expect("v6");
        assert_eq!(
            (p.host.as_str(), p.port, p.tpgt),
            ("fe80::1", 3260, Some(1))
        );
        let p = parse_portal("[fe80::1]").expect("v6 without port");
        assert_eq!((p.port, p.tpgt), (DEFAULT_PORT, None));
        let p = parse_portal("storage.example").expect("name");
        assert_eq!((p.host.as_str(), p.port), ("storage.example", DEFAULT_PORT));
        assert_eq!(parse_portal("h:1,x"), Err(UrlError::Port));
        assert_eq!(parse_portal(",1"), Err(UrlError::Host));
    }
}
