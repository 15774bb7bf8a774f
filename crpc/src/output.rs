//! Human tables and machine JSON on stdout.
use serde_json::Value;

/// Prints `v` as one line of JSON.
pub fn json_line(v: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string(v).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    );
}

/// A value for a human: strings bare, everything else as compact JSON.
pub fn human(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Left-aligned columns separated by two spaces, a header first.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(c);
                out.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        out.trim_end().to_string()
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// Seconds for a human: `850ms`, `12.3s`, `4m 10s`, `2h 5m`.
pub fn seconds(s: f64) -> String {
    if !s.is_finite() || s < 0.0 {
        return "?".into();
    }
    if s < 1.0 {
        format!("{:.0}ms", s * 1000.0)
    } else if s < 60.0 {
        format!("{s:.1}s")
    } else if s < 3600.0 {
        format!("{}m {}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!("{}h {}m", (s / 3600.0) as u64, ((s % 3600.0) / 60.0) as u64)
    }
}

/// Milliseconds since the epoch → "12s ago".
pub fn ago(ms: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    format!("{} ago", seconds(((now - ms).max(0)) as f64 / 1000.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let t = table(
            &["ID", "STATE"],
            &[
                vec!["a".into(), "queued".into()],
                vec!["bbbb".into(), "x".into()],
            ],
        );
        assert_eq!(t, "ID    STATE\na     queued\nbbbb  x");
        assert_eq!(seconds(0.25), "250ms");
        assert_eq!(seconds(125.0), "2m 5s");
    }
}
