//! `[monitoring]`: the metrics listener and the lag alarm.

use std::net::SocketAddr;

use dynashift_core::schedule::parse_duration;

use super::raw::RawMonitoring;
use super::InvalidSetting;

/// The lag alarm's threshold unless `alert_lag` says otherwise.
pub const DEFAULT_ALERT_LAG_SECS: u64 = 6 * 3600;

#[derive(Debug, Clone, PartialEq)]
pub struct Monitoring {
    /// Where `/metrics`, `/healthz` and `/readyz` are served (`--metrics` overrides it).
    pub metrics: Option<SocketAddr>,
    /// A table whose oldest unapplied change is older raises the lag alarm (seconds);
    /// `None`: `alert_lag = "0s"`, no alarm.
    pub alert_lag: Option<u64>,
}

impl Default for Monitoring {
    fn default() -> Monitoring {
        Monitoring { metrics: None, alert_lag: Some(DEFAULT_ALERT_LAG_SECS) }
    }
}

impl TryFrom<&RawMonitoring> for Monitoring {
    type Error = InvalidSetting;

    fn try_from(raw: &RawMonitoring) -> Result<Monitoring, InvalidSetting> {
        let metrics = match &raw.metrics {
            None => None,
            Some(text) => {
                Some(parse_listen_address(text).map_err(|e| InvalidSetting::parse("monitoring.metrics", e))?)
            }
        };
        let alert_lag = match &raw.alert_lag {
            None => Some(DEFAULT_ALERT_LAG_SECS),
            Some(text) => {
                match parse_duration(text).map_err(|e| InvalidSetting::parse("monitoring.alert_lag", e))? {
                    0 => None,
                    secs => Some(secs),
                }
            }
        };
        Ok(Monitoring { metrics, alert_lag })
    }
}

/// A listening address such as `127.0.0.1:9464` or `[::1]:9464`.
pub fn parse_listen_address(text: &str) -> Result<SocketAddr, std::net::AddrParseError> {
    text.trim().parse()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let raw = |metrics: Option<&str>, lag: Option<&str>| RawMonitoring {
            metrics: metrics.map(str::to_string),
            alert_lag: lag.map(str::to_string),
        };
        assert_eq!(Monitoring::try_from(&raw(None, None)).unwrap(), Monitoring::default());
        let m = Monitoring::try_from(&raw(Some("127.0.0.1:9464"), Some("30m"))).unwrap();
        assert_eq!(m.metrics, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(m.alert_lag, Some(1800));
        assert_eq!(Monitoring::try_from(&raw(None, Some("0s"))).unwrap().alert_lag, None);
        let bad = Monitoring::try_from(&raw(Some("localhost"), None)).unwrap_err();
        assert!(bad.to_string().contains("monitoring.metrics"), "{bad}");
        let bad = Monitoring::try_from(&raw(None, Some("six hours"))).unwrap_err();
        assert!(bad.to_string().contains("monitoring.alert_lag"), "{bad}");
    }
}
