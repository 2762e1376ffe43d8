//! Aligned text tables for `bocluster sql` and its shell.

use serde_json::Value;

/// A cell as text: strings bare, null empty, anything else as JSON.
pub fn cell_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Renders columns and rows as an aligned table with a header rule.
pub fn render(columns: &[String], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = columns.iter().map(|c| c.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: &[String]| -> String {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = widths.get(i).copied().unwrap_or(0)))
            .collect();
        padded.join(" | ").trim_end().to_string()
    };
    let mut out = String::new();
    out.push_str(&line(columns));
    out.push('\n');
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&rule.join("-+-"));
    out.push('\n');
    for row in rows {
        out.push_str(&line(row));
        out.push('\n');
    }
    out
}

/// The answer's result set as an aligned table, with its row count; `None` without columns.
pub fn format_rows(body: &Value) -> Option<(String, usize)> {
    let columns: Vec<String> = body
        .get("columns")
        .and_then(Value::as_array)
        .map(|cols| cols.iter().map(cell_text).collect())
        .unwrap_or_default();
    if columns.is_empty() {
        return None;
    }
    let rows: Vec<Vec<String>> = body
        .get("results")
        .and_then(Value::as_array)
        .map(|rows| {
            rows.iter()
                .map(|row| {
                    row.as_array()
                        .map(|r| r.iter().map(cell_text).collect())
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default();
    Some((render(&columns, &rows), rows.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns() {
        let table = render(
            &["name".into(), "n".into()],
            &[
                vec!["a".into(), "10".into()],
                vec!["long_name".into(), "2".into()],
            ],
        );
        assert_eq!(
            table,
            "name      | n\n----------+---\na         | 10\nlong_name | 2\n"
        );
    }

    #[test]
    fn cells_render_plainly() {
        assert_eq!(cell_text(&Value::from("x")), "x");
        assert_eq!(cell_text(&Value::from(7)), "7");
        assert_eq!(cell_text(&Value::Null), "");
    }
}
