//! What commands print: an aligned table for people, or JSON for scripts (`--json`).

use serde_json::{Map, Value};

use crate::exit::{Failure, Outcome};

/// Rows with named columns, printed as a table or as a JSON array of objects (the keys are
/// the column names in lower case).
pub struct Rows {
    columns: &'static [&'static str],
    rows: Vec<Vec<Value>>,
}

impl Rows {
    /// No rows yet, under these column names (upper case, as the table shows them).
    pub fn new(columns: &'static [&'static str]) -> Self {
        Self {
            columns,
            rows: Vec::new(),
        }
    }

    /// Adds a row; it has one value per column.
    pub fn push(&mut self, row: Vec<Value>) {
        debug_assert_eq!(row.len(), self.columns.len(), "one value per column");
        self.rows.push(row);
    }

    /// The table, or the JSON array with `json`.
    pub fn render(&self, json: bool) -> String {
        if json {
            let objects: Vec<Value> = self
                .rows
                .iter()
                .map(|row| {
                    let object: Map<String, Value> = self
                        .columns
                        .iter()
                        .map(|c| c.to_lowercase())
                        .zip(row.iter().cloned())
                        .collect();
                    Value::Object(object)
                })
                .collect();
            return Value::Array(objects).to_string();
        }
        let cells: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|row| row.iter().map(cell).collect())
            .collect();
        let widths: Vec<usize> = (0..self.columns.len())
            .map(|i| {
                cells
                    .iter()
                    .map(|row| row[i].chars().count())
                    .chain([self.columns[i].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |values: Vec<&str>| {
            let padded: Vec<String> = values
                .iter()
                .zip(&widths)
                .map(|(v, w)| format!("{v:<w$}"))
                .collect();
            padded.join("  ").trim_end().to_owned()
        };
        let mut out = line(self.columns.to_vec());
        for row in &cells {
            out.push('\n');
            out.push_str(&line(row.iter().map(String::as_str).collect()));
        }
        out
    }
}

/// A summary of what a command did: a sentence, or one JSON object with `json`.
pub fn summary(json: bool, sentence: &str, object: Value) -> String {
    if json {
        object.to_string()
    } else {
        sentence.to_owned()
    }
}

/// Prints what a replay or purge changed; a filter (not `--all`) that selected none of the
/// `things` is exit code 3.
pub fn changed(
    json: bool,
    sentence: &str,
    object: Value,
    selected: u64,
    all: bool,
    things: &str,
) -> Outcome {
    println!("{}", summary(json, sentence, object));
    if selected == 0 && !all {
        return Err(Failure::NothingMatched(format!(
            "no {things} matches the filter; nothing changed"
        )));
    }
    Ok(())
}

fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_and_json_names_the_columns() {
        let mut rows = Rows::new(&["TOPIC", "PENDING"]);
        rows.push(vec![json!("orders"), json!(12)]);
        rows.push(vec![json!("a"), Value::Null]);
        assert_eq!(rows.render(false), "TOPIC   PENDING\norders  12\na");
        assert_eq!(
            rows.render(true),
            r#"[{"pending":12,"topic":"orders"},{"pending":null,"topic":"a"}]"#
        );
    }
}
