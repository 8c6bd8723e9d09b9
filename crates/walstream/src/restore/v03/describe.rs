//! The `-dry-run` text of a 0.3 restore plan.
use super::*;

/// `-dry-run` for a 0.3 backup: what would be fetched.
pub fn describe_plan(source: &str, target: &str, kind: &str, plan: &Plan) -> String {
    let mut rows = vec![["kind", "index", "offset", "size", "timestamp", "key"]
        .map(String::from)
        .to_vec()];
    rows.push(vec![
        "snapshot".to_string(),
        format!("{:08x}", plan.snapshot.index),
        String::new(),
        plan.snapshot.size.to_string(),
        crate::text::fmt_time(plan.snapshot.created_at),
        plan.snapshot.key.clone(),
    ]);
    for (_, segs) in &plan.wal {
        for s in segs {
            rows.push(vec![
                "wal".to_string(),
                format!("{:08x}", s.index),
                format!("{:08x}", s.offset),
                s.size.to_string(),
                crate::text::fmt_time(s.created_at),
                s.key.clone(),
            ]);
        }
    }
    let wal = match (plan.wal.first(), plan.wal.last()) {
        (Some((a, _)), Some((b, _))) => format!("{a:08x} - {b:08x}"),
        _ => "none (snapshot only)".to_string(),
    };
    format!(
        "Restore plan (Litestream 0.3 backup):\n  source: {source}\n  target: {target}\n  replica: {kind}\n  generation: {}\n  snapshot index: {:08x}\n  wal indexes: {wal}\n\nFiles to fetch:\n{}",
        plan.generation,
        plan.snapshot.index,
        crate::text::tabwrite(&rows)
    )
}
