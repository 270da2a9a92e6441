//! `kxdp inspect`: ask the agent what the data path holds and print it as a table or JSON.

use std::path::PathBuf;

use clap::Args;
use serde_json::Value;

use crate::api::{ApiClient, InspectWhat, Request};

/// `kxdp inspect WHAT [--json] [--api-socket PATH]`.
#[derive(Debug, Clone, Args)]
pub struct InspectArgs {
    /// What to show.
    #[arg(value_enum)]
    pub what: InspectWhat,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The agent's local API socket.
    #[arg(long, default_value = "/run/kxdp/kxdp.sock")]
    pub api_socket: PathBuf,
}

pub fn run(args: &InspectArgs) -> anyhow::Result<()> {
    let v = ApiClient::new(&args.api_socket).call(&Request::Inspect { what: args.what })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", render(&v));
    }
    Ok(())
}

/// A table for arrays of objects (columns from the first row's keys, in order); objects print
/// their scalar fields as `key: value` and their arrays as tables.
pub fn render(v: &Value) -> String {
    match v {
        Value::Array(rows) => table(rows),
        Value::Object(map) => {
            let mut out = String::new();
            for (k, val) in map {
                match val {
                    Value::Array(rows) => {
                        out.push_str(&format!("{k}:\n"));
                        out.push_str(&table(rows));
                    }
                    other => out.push_str(&format!("{k}: {}\n", cell(other))),
                }
            }
            out
        }
        other => format!("{}\n", cell(other)),
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_string(),
        Value::Object(_) | Value::Array(_) => {
            serde_json::to_string(v).unwrap_or_else(|_| "?".to_string())
        }
        other => other.to_string(),
    }
}

fn table(rows: &[Value]) -> String {
    let Some(Value::Object(first)) = rows.first() else {
        return if rows.is_empty() {
            "(none)\n".to_string()
        } else {
            rows.iter().map(|r| format!("{}\n", cell(r))).collect()
        };
    };
    let cols: Vec<&String> = first.keys().collect();
    let grid: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            cols.iter()
                .map(|c| cell(r.get(c.as_str()).unwrap_or(&Value::Null)))
                .collect()
        })
        .collect();
    let widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| {
            grid.iter()
                .map(|r| r[i].len())
                .max()
                .unwrap_or(0)
                .max(c.len())
        })
        .collect();
    let line = |cells: Vec<String>| {
        let mut s = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ");
        s.truncate(s.trim_end().len());
        s.push('\n');
        s
    };
    let mut out = line(cols.iter().map(|c| c.to_uppercase()).collect());
    for r in grid {
        out.push_str(&line(r));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_of_objects_become_tables() {
        let v = serde_json::json!([
            {"name": "a", "ip": "192.168.77.1", "resolved": true},
            {"name": "bb", "ip": "192.168.77.2", "resolved": false}
        ]);
        assert_eq!(
            render(&v),
            "NAME  IP            RESOLVED\na     192.168.77.1  true\nbb    192.168.77.2  false\n"
        );
        assert_eq!(render(&serde_json::json!([])), "(none)\n");
        let v = serde_json::json!({"generation": 3, "routes": [{"prefix": "0.0.0.0/0", "route": "host"}]});
        assert_eq!(
            render(&v),
            "generation: 3\nroutes:\nPREFIX     ROUTE\n0.0.0.0/0  host\n"
        );
    }
}
