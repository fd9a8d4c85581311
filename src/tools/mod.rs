//! Kafka's command-line tools as `sluice` subcommands, with Kafka's verbs, flag names
//! and output formats. They speak the Kafka protocol through `sluice-client`, so they
//! work against any Kafka broker as well as Sluice. Each runs on the main thread
//! (the group consumer adds a heartbeat thread).

pub mod console_consumer;
pub mod console_producer;
pub mod consumer_groups;
pub mod topics;

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use sluice_client::{Client, ClientConfig};

/// Connects to the bootstrap servers with the tools' client id.
pub fn connect(bootstrap_server: &str, client_id: &str) -> Result<Client> {
    let config = ClientConfig {
        client_id: client_id.to_owned(),
        ..ClientConfig::default()
    };
    Client::connect(bootstrap_server, config)
        .with_context(|| format!("cannot reach a broker of --bootstrap-server {bootstrap_server}"))
}

/// Parses repeated `key=value` options (`--property`, `--config`, ...).
pub fn parse_properties(flag: &str, pairs: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=') else {
            bail!("invalid {flag} {pair:?}: expected key=value");
        };
        let key = key.trim();
        if key.is_empty() {
            bail!("invalid {flag} {pair:?}: empty key");
        }
        out.insert(key.to_owned(), value.to_owned());
    }
    Ok(out)
}

/// Kafka's boolean property syntax.
pub fn property_bool(props: &BTreeMap<String, String>, key: &str, default: bool) -> Result<bool> {
    match props.get(key).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if v == "true" => Ok(true),
        Some(v) if v == "false" => Ok(false),
        Some(v) => bail!("invalid value {v:?} for {key}: expected true or false"),
    }
}

/// Kafka's escapes in separators given on the command line (`\t`, `\n`, `\r`, `\\`).
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_and_escapes() {
        let props = parse_properties(
            "--property",
            &[
                "print.key=true".into(),
                "key.separator=:".into(),
                "x==y".into(),
            ],
        )
        .expect("valid");
        assert_eq!(props["key.separator"], ":");
        assert_eq!(props["x"], "=y");
        assert!(property_bool(&props, "print.key", false).expect("bool"));
        assert!(!property_bool(&props, "absent", false).expect("default"));
        assert!(parse_properties("--property", &["novalue".into()]).is_err());
        assert_eq!(unescape(r"a\tb\n\\"), "a\tb\n\\");
    }
}
