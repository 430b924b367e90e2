//! Short human formats for durations in reasons ("3m0s", "45s", "1h2m3s", "500ms").

use std::time::Duration;

/// Formats `d` as `1h2m3s`, `3m0s`, `45s` or, under a second, `500ms`.
pub(crate) fn duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 && d.subsec_millis() > 0 {
        return format!("{}ms", d.subsec_millis());
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

/// "1 replica" or "3 replicas".
pub(crate) fn replicas(n: u32) -> String {
    if n == 1 {
        "1 replica".to_owned()
    } else {
        format!("{n} replicas")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_durations_compactly() {
        assert_eq!(duration(Duration::from_secs(180)), "3m0s");
        assert_eq!(duration(Duration::from_secs(179)), "2m59s");
        assert_eq!(duration(Duration::from_secs(45)), "45s");
        assert_eq!(duration(Duration::from_secs(3723)), "1h2m3s");
        assert_eq!(duration(Duration::from_millis(500)), "500ms");
        assert_eq!(duration(Duration::ZERO), "0s");
    }
}
