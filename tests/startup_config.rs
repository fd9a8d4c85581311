//! Start-up configuration as `kafka-server-start.sh` takes it: a bad value stops the
//! broker with a message naming the key; an unknown key is only warned about.

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use anyhow::{ensure, Result};
use common::{parse_ready_line, Client};

#[test]
fn bad_value_stops_start_up_naming_the_key() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["serve", "--override", "listeners=PLAINTEXT://127.0.0.1:0"])
        .arg("--override")
        .arg(format!("log.dirs={}", dir.path().display()))
        .args(["--override", "num.partitions=many"])
        .stdin(Stdio::null())
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        !output.status.success(),
        "started with a bad value: {stderr}"
    );
    ensure!(
        stderr.contains("num.partitions"),
        "message does not name the key: {stderr}"
    );
    ensure!(
        !String::from_utf8_lossy(&output.stdout).contains("ready on"),
        "printed the ready line"
    );
    Ok(())
}

#[test]
fn missing_properties_file_is_an_error() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("server.properties");
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("serve")
        .arg(&missing)
        .stdin(Stdio::null())
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        !output.status.success(),
        "started without its properties file"
    );
    ensure!(
        stderr.contains("server.properties"),
        "message does not name the file: {stderr}"
    );
    Ok(())
}

#[test]
fn properties_file_is_read_and_unknown_keys_warned_about() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let props = dir.path().join("server.properties");
    std::fs::write(
        &props,
        format!(
            "# a Kafka-style file\nlisteners=PLAINTEXT://127.0.0.1:0\nlog.dirs={}\n\
             num.partitions=3\nno.such.key=1\n",
            dir.path().join("data").display()
        ),
    )?;
    let stderr_path = dir.path().join("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("serve")
        .arg(&props)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(File::create(&stderr_path)?))
        .spawn()?;
    let stdout = child.stdout.take().expect("piped stdout");
    let ready = BufReader::new(stdout)
        .lines()
        .map_while(|line| line.ok())
        .find(|line| line.contains("ready on "));
    let result = (|| -> Result<()> {
        let addr = parse_ready_line(ready.as_deref().unwrap_or("no ready line"))?;
        let mut client = Client::connect(addr)?;
        // CreateTopics with the default count (-1) takes num.partitions from the file.
        client.create_topic("from-props", -1)?;
        let metadata = client.metadata(Some(&["from-props"]))?;
        let partitions = metadata.topics.first().map_or(0, |t| t.partitions.len());
        ensure!(
            partitions == 3,
            "created with {partitions} partitions, not num.partitions=3"
        );
        Ok(())
    })();
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait()?;
    result?;
    ensure!(status.code() == Some(0), "exit status {status:?}");
    let stderr = std::fs::read_to_string(&stderr_path)?;
    ensure!(
        stderr.contains("no.such.key"),
        "no warning for the unknown key: {stderr}"
    );
    Ok(())
}

#[test]
fn broker_rack_is_advertised_in_metadata() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let broker = common::Broker::start(dir.path(), &[("broker.rack", "rack-a")])?;
    let metadata = broker.client()?.metadata(Some(&[]))?;
    ensure!(metadata.brokers.len() == 1, "{metadata:?}");
    let rack = metadata.brokers[0].rack.as_ref().map(|r| r.to_string());
    ensure!(rack.as_deref() == Some("rack-a"), "rack {rack:?}");
    Ok(())
}
