//! The table the benchmarks print: one row per figure (name, value, unit),
//! aligned, then the targets (met or not) and the details behind them.

/// The rows aligned under a header, then `targets` and `details` (each
/// section left out when empty).
pub fn figures(rows: &[[String; 3]], targets: &[String], details: &[String]) -> String {
    let width = rows.iter().map(|r| r[0].len()).max().unwrap_or(0);
    let value_width = rows.iter().map(|r| r[1].len()).max().unwrap_or(0);
    let mut out = String::from("\n");
    out += &format!("{:<width$}  {:>value_width$}  unit\n", "figure", "value");
    out += &format!("{}\n", "-".repeat(width + value_width + 10));
    for [name, value, unit] in rows {
        out += &format!("{name:<width$}  {value:>value_width$}  {unit}\n");
    }
    for (title, lines) in [("targets", targets), ("details", details)] {
        if !lines.is_empty() {
            out += &format!("\n{title}:\n");
            for line in lines {
                out += &format!("  {line}\n");
            }
        }
    }
    out
}
