//! Malformed and hostile input against the real binary: each case must affect only the
//! offending connection (closed, or answered with Kafka's error), never the process or
//! other connections, and must never store anything.

mod common;

use anyhow::{ensure, Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use common::{encode_batch, error_code, record, Broker, Client, BATCH_CRC_OFFSET};
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, ResponseHeader};
use kafka_protocol::protocol::Decodable;
use kafka_protocol::records::Compression;

fn start() -> Result<(tempfile::TempDir, Broker)> {
    let dir = tempfile::tempdir()?;
    let broker = Broker::start(dir.path(), &[])?;
    Ok((dir, broker))
}

/// The broker process is alive and a fresh connection can create a topic, produce and
/// fetch back exactly what it produced.
fn assert_healthy(broker: &Broker, topic: &str) -> Result<()> {
    let mut client = broker
        .client()
        .context("a fresh connection after bad input")?;
    client.create_topic(topic, 1)?;
    let batch = encode_batch(
        &[
            record(Some(b"k0"), b"healthy-0", 1_700_000_000_000),
            record(Some(b"k1"), b"healthy-1", 1_700_000_000_001),
        ],
        Compression::None,
    )?;
    let base_offset = client.produce_ok(topic, 0, batch)?;
    ensure!(
        base_offset == 0,
        "first batch of {topic} got base offset {base_offset}"
    );
    let records = client.fetch_all(topic, 0, 0)?;
    let values: Vec<_> = records
        .iter()
        .map(|r| r.value.clone().unwrap_or_default())
        .collect();
    ensure!(
        values
            == [
                Bytes::from_static(b"healthy-0"),
                Bytes::from_static(b"healthy-1")
            ],
        "fetched {values:?}"
    );
    ensure!(records[1].key.as_deref() == Some(&b"k1"[..]), "wrong key");
    ensure!(records[1].offset == 1, "wrong offset {}", records[1].offset);
    Ok(())
}

/// A request header (v1: key, version, correlation id, client id) for hand-made frames.
fn header_v1(api_key: i16, api_version: i16, correlation_id: i32) -> BytesMut {
    let mut buf = BytesMut::new();
    buf.put_i16(api_key);
    buf.put_i16(api_version);
    buf.put_i32(correlation_id);
    buf.put_i16(5);
    buf.put_slice(b"tests");
    buf
}

#[test]
fn oversized_length_prefix_closes_only_that_connection() -> Result<()> {
    let (_dir, broker) = start()?;
    let mut idle = broker.client()?;
    let mut bad = Client::connect_raw(broker.addr)?;
    bad.write_raw(&0x7fff_ffff_i32.to_be_bytes())?;
    // A little of the "body"; the broker must not wait for (or allocate) 2 GiB.
    bad.write_raw(&[0u8; 64])?;
    bad.expect_closed()?;
    // The connection opened before the bad one still works.
    ensure!(
        idle.metadata(None)?.brokers.len() == 1,
        "expected one broker in metadata"
    );
    assert_healthy(&broker, "after-oversized")
}

#[test]
fn length_just_above_socket_request_max_bytes_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let broker = Broker::start(dir.path(), &[("socket.request.max.bytes", "1048576")])?;
    let mut bad = Client::connect_raw(broker.addr)?;
    bad.write_raw(&(1_048_576_i32 + 1).to_be_bytes())?;
    bad.expect_closed()?;
    assert_healthy(&broker, "after-max-bytes")
}

#[test]
fn negative_length_prefix_closes_connection() -> Result<()> {
    let (_dir, broker) = start()?;
    let mut bad = Client::connect_raw(broker.addr)?;
    bad.write_raw(&(-1_i32).to_be_bytes())?;
    bad.write_raw(&[1u8; 16])?;
    bad.expect_closed()?;
    assert_healthy(&broker, "after-negative")
}

#[test]
fn garbage_request_body_closes_connection() -> Result<()> {
    let (_dir, broker) = start()?;
    let mut bad = Client::connect_raw(broker.addr)?;
    // A Metadata v12 (flexible) header followed by nonsense: the compact topics array
    // length is an endless varint.
    let mut frame = header_v1(ApiKey::Metadata as i16, 12, 7);
    frame.put_u8(0); // header tagged fields
    frame.put_slice(&[0xff; 40]);
    bad.write_frame(&frame)?;
    bad.expect_closed()?;
    assert_healthy(&broker, "after-garbage")
}

#[test]
fn random_bytes_close_connection() -> Result<()> {
    let (_dir, broker) = start()?;
    let mut bad = Client::connect_raw(broker.addr)?;
    // Deterministic pseudo-random bytes (xorshift), framed with a correct length.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let body: Vec<u8> = (0..300)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state & 0xff) as u8
        })
        .collect();
    bad.write_frame(&body)?;
    // Either closed or, if the header happened to parse, an error; never a crash.
    let _ = bad.read_frame_or_close()?;
    assert_healthy(&broker, "after-random")
}

#[test]
fn truncated_frame_then_close_does_not_disturb_others() -> Result<()> {
    let (_dir, broker) = start()?;
    let mut other = broker.client()?;
    let mut bad = Client::connect_raw(broker.addr)?;
    bad.write_raw(&100_i32.to_be_bytes())?;
    bad.write_raw(&header_v1(ApiKey::Metadata as i16, 1, 1)[..6])?;
    drop(bad);
    ensure!(
        other.metadata(None)?.brokers.len() == 1,
        "metadata on a healthy connection"
    );
    assert_healthy(&broker, "after-truncated")
}

#[test]
fn truncated_frame_with_half_close_gets_connection_closed() -> Result<()> {
    let (_dir, broker) = start()?;
    let stream = std::net::TcpStream::connect(broker.addr)?;
    stream.set_read_timeout(Some(common::REQUEST_TIMEOUT))?;
    let mut writer = stream.try_clone()?;
    std::io::Write::write_all(&mut writer, &50_i32.to_be_bytes())?;
    std::io::Write::write_all(&mut writer, &[0u8; 10])?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut buf = [0u8; 16];
    let n = match std::io::Read::read(&mut &stream, &mut buf) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
        Err(e) => {
            return Err(e).context("waiting for the broker to close a half-closed connection")
        }
    };
    ensure!(n == 0, "broker answered a truncated frame with {n} bytes");
    assert_healthy(&broker, "after-half-close")
}

#[test]
fn unknown_api_key_closes_connection() -> Result<()> {
    let (_dir, broker) = start()?;
    let mut bad = Client::connect_raw(broker.addr)?;
    let mut frame = header_v1(9_999, 0, 3);
    frame.put_slice(&[0u8; 8]);
    bad.write_frame(&frame)?;
    bad.expect_closed()?;
    assert_healthy(&broker, "after-unknown-key")
}

/// Kafka closes the connection on a version it does not enable; the broker may instead
/// answer with UNSUPPORTED_VERSION. Either is acceptable; success is not.
fn expect_closed_or_unsupported(
    client: &mut Client,
    correlation_id: i32,
    error_offset: impl Fn(&[u8]) -> Option<i16>,
) -> Result<()> {
    match client.read_frame_or_close()? {
        None => Ok(()),
        Some(frame) => {
            ensure!(frame.len() >= 4, "short response");
            let cid = i32::from_be_bytes(frame[0..4].try_into().expect("4 bytes"));
            ensure!(
                cid == correlation_id,
                "correlation id {cid} != {correlation_id}"
            );
            let error = error_offset(&frame[4..]).context("cannot find the error code")?;
            ensure!(
                error == error_code::UNSUPPORTED_VERSION,
                "expected UNSUPPORTED_VERSION (35), got {error}"
            );
            Ok(())
        }
    }
}

#[test]
fn produce_v2_is_advertised_but_rejected_and_stores_nothing() -> Result<()> {
    let (_dir, broker) = start()?;
    let mut client = broker.client()?;
    client.create_topic("v2", 1)?;
    let (min, max) = client
        .advertised(ApiKey::Produce as i16)
        .context("Produce advertised")?;
    ensure!(
        min == 0,
        "Produce must be advertised from v0 (librdkafka compression), got {min}"
    );
    ensure!(max >= 3, "Produce max version {max}");

    let batch = encode_batch(&[record(None, b"v2-record", 1)], Compression::None)?;
    let mut raw = Client::connect_raw(broker.addr)?;
    // Produce v2 body: acks, timeout, [topic [partition records]].
    let mut frame = header_v1(ApiKey::Produce as i16, 2, 42);
    frame.put_i16(1);
    frame.put_i32(5_000);
    frame.put_i32(1);
    frame.put_i16(2);
    frame.put_slice(b"v2");
    frame.put_i32(1);
    frame.put_i32(0);
    frame.put_i32(i32::try_from(batch.len())?);
    frame.put_slice(&batch);
    raw.write_frame(&frame)?;
    // v2 response body: [topic: name, [partition: index(4) error(2) ...]].
    expect_closed_or_unsupported(&mut raw, 42, |body| {
        let name_len =
            usize::try_from(i16::from_be_bytes(body.get(4..6)?.try_into().ok()?)).ok()?;
        let at = 6 + name_len + 4 + 4;
        Some(i16::from_be_bytes(body.get(at..at + 2)?.try_into().ok()?))
    })?;
    ensure!(
        client.latest_offset("v2", 0)? == 0,
        "Produce v2 stored a record"
    );
    assert_healthy(&broker, "after-produce-v2")
}

#[test]
fn metadata_v99_is_refused() -> Result<()> {
    let (_dir, broker) = start()?;
    let mut bad = Client::connect_raw(broker.addr)?;
    let mut frame = header_v1(ApiKey::Metadata as i16, 99, 9);
    frame.put_i32(-1);
    bad.write_frame(&frame)?;
    // No schema exists for a v99 response; only "closed" or an error code right after
    // the header (throttle time first in every Metadata version that has it) make sense.
    expect_closed_or_unsupported(&mut bad, 9, |body| {
        // Accept the error either at the very start or after a (possibly empty)
        // tagged-field byte and throttle time.
        [0usize, 1, 4, 5]
            .iter()
            .filter_map(|&at| body.get(at..at + 2))
            .map(|b| i16::from_be_bytes([b[0], b[1]]))
            .find(|&e| e == error_code::UNSUPPORTED_VERSION)
    })?;
    assert_healthy(&broker, "after-metadata-v99")
}

#[test]
fn api_versions_v99_is_answered_with_v0_error_and_versions() -> Result<()> {
    let (_dir, broker) = start()?;
    let mut raw = Client::connect_raw(broker.addr)?;
    // A client speaking a newer ApiVersions sends a flexible (v2) header.
    let mut frame = header_v1(ApiKey::ApiVersions as i16, 99, 77);
    frame.put_u8(0);
    frame.put_slice(&[0u8; 3]);
    raw.write_frame(&frame)?;
    let body = raw
        .read_frame()
        .context("ApiVersions v99 must be answered, not closed")?;
    let mut body = Bytes::from(body);
    // Response header v0 (ApiVersions responses never use the flexible header).
    let header = ResponseHeader::decode(&mut body, 0)?;
    ensure!(
        header.correlation_id == 77,
        "correlation id {}",
        header.correlation_id
    );
    let response = ApiVersionsResponse::decode(&mut body, 0)?;
    ensure!(
        response.error_code == error_code::UNSUPPORTED_VERSION,
        "error code {}",
        response.error_code
    );
    let api_versions = response
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::ApiVersions as i16)
        .context("the error response must still list ApiVersions' own versions")?;
    ensure!(
        api_versions.min_version == 0,
        "ApiVersions min {}",
        api_versions.min_version
    );
    ensure!(
        api_versions.max_version >= 3,
        "ApiVersions max {}",
        api_versions.max_version
    );
    ensure!(
        response
            .api_keys
            .iter()
            .any(|k| k.api_key == ApiKey::Produce as i16),
        "Produce missing from the error response's versions"
    );
    assert_healthy(&broker, "after-api-versions-v99")
}

#[test]
fn corrupt_batch_crc_is_rejected_and_not_stored() -> Result<()> {
    let (_dir, broker) = start()?;
    let mut client = broker.client()?;
    client.create_topic("crc", 2)?;
    let good = encode_batch(
        &[record(Some(b"k"), b"good", 1_700_000_000_000)],
        Compression::None,
    )?;
    ensure!(client.produce_ok("crc", 0, good)? == 0, "first base offset");
    ensure!(
        client.latest_offset("crc", 0)? == 1,
        "latest offset after one record"
    );

    let batch = encode_batch(
        &[
            record(Some(b"k1"), b"corrupted-1", 1_700_000_000_001),
            record(Some(b"k2"), b"corrupted-2", 1_700_000_000_002),
        ],
        Compression::None,
    )?;
    // Flip one bit of the last value byte: the CRC no longer matches.
    let mut bad = BytesMut::from(&batch[..]);
    let last = bad.len() - 2;
    bad[last] ^= 0x01;
    ensure!(bad.len() > BATCH_CRC_OFFSET + 4, "batch too short");
    let (error, _) = client.produce("crc", 0, bad.freeze(), -1)?;
    ensure!(
        error == error_code::CORRUPT_MESSAGE,
        "expected CORRUPT_MESSAGE (2), got {error}"
    );

    // Also a batch whose CRC field itself is wrong.
    let mut bad_crc = BytesMut::from(&batch[..]);
    bad_crc[BATCH_CRC_OFFSET] ^= 0xff;
    let (error, _) = client.produce("crc", 1, bad_crc.freeze(), 1)?;
    ensure!(
        error == error_code::CORRUPT_MESSAGE,
        "expected CORRUPT_MESSAGE (2), got {error}"
    );

    ensure!(
        client.latest_offset("crc", 0)? == 1,
        "corrupt batch stored in crc-0"
    );
    ensure!(
        client.latest_offset("crc", 1)? == 0,
        "corrupt batch stored in crc-1"
    );
    let records = client.fetch_all("crc", 0, 0)?;
    ensure!(records.len() == 1, "crc-0 holds {} records", records.len());
    ensure!(
        records[0].value.as_deref() == Some(&b"good"[..]),
        "crc-0 content"
    );
    // The same connection is still usable.
    let again = encode_batch(
        &[record(None, b"after", 1_700_000_000_003)],
        Compression::None,
    )?;
    ensure!(
        client.produce_ok("crc", 0, again)? == 1,
        "offset after the rejected batch"
    );
    Ok(())
}

#[test]
fn invalid_topic_names_are_rejected() -> Result<()> {
    let (_dir, broker) = start()?;
    let mut client = broker.client()?;
    let long_name = "x".repeat(250);
    let names = [
        "",
        ".",
        "..",
        "a/b",
        "has space",
        "star*",
        long_name.as_str(),
    ];
    for name in names {
        let response = client.create_topics(&[(name, 1)], false)?;
        let result = response.topics.first().context("no topic result")?;
        ensure!(
            result.error_code == error_code::INVALID_TOPIC_EXCEPTION,
            "topic {name:?}: expected INVALID_TOPIC_EXCEPTION (17), got {}",
            result.error_code
        );
    }
    let metadata = client.metadata(None)?;
    ensure!(
        metadata.topics.is_empty(),
        "invalid topics were created: {:?}",
        metadata
            .topics
            .iter()
            .map(|t| t.name.clone())
            .collect::<Vec<_>>()
    );
    assert_healthy(&broker, "after-invalid-names")
}

#[test]
fn invalid_partition_counts_are_rejected() -> Result<()> {
    let (_dir, broker) = start()?;
    let mut client = broker.client()?;
    for (name, partitions) in [("zero-partitions", 0), ("minus-two-partitions", -2)] {
        let response = client.create_topics(&[(name, partitions)], false)?;
        let result = response.topics.first().context("no topic result")?;
        ensure!(
            result.error_code == error_code::INVALID_PARTITIONS,
            "{partitions} partitions: expected INVALID_PARTITIONS (37), got {}",
            result.error_code
        );
    }
    ensure!(
        client.metadata(None)?.topics.is_empty(),
        "a topic with a bad partition count exists"
    );
    // A duplicate is TOPIC_ALREADY_EXISTS, and the original is unchanged.
    client.create_topic("dup", 3)?;
    let response = client.create_topics(&[("dup", 5)], false)?;
    let error = response
        .topics
        .first()
        .context("no topic result")?
        .error_code;
    ensure!(
        error == error_code::TOPIC_ALREADY_EXISTS,
        "duplicate create: error {error}"
    );
    let metadata = client.metadata(Some(&["dup"]))?;
    ensure!(
        metadata.topics[0].partitions.len() == 3,
        "dup's partition count changed"
    );
    assert_healthy(&broker, "after-bad-partitions")
}

#[test]
fn everything_bad_in_a_row_then_round_trip() -> Result<()> {
    let (_dir, broker) = start()?;
    let mut survivor = broker.client()?;
    survivor.create_topic("survivor", 1)?;

    let mut c = Client::connect_raw(broker.addr)?;
    c.write_raw(&0x7fff_ffff_i32.to_be_bytes())?;
    c.expect_closed()?;
    let mut c = Client::connect_raw(broker.addr)?;
    c.write_raw(&(-7_i32).to_be_bytes())?;
    c.expect_closed()?;
    let mut c = Client::connect_raw(broker.addr)?;
    c.write_frame(&header_v1(-3, 0, 1))?;
    c.expect_closed()?;
    let mut c = Client::connect_raw(broker.addr)?;
    c.write_raw(&[0, 0, 1, 0, 1, 2, 3])?;
    drop(c);

    let batch = encode_batch(
        &[record(Some(b"key"), b"value", 1_700_000_000_000)],
        Compression::Lz4,
    )?;
    ensure!(
        survivor.produce_ok("survivor", 0, batch)? == 0,
        "base offset"
    );
    let records = survivor.fetch_all("survivor", 0, 0)?;
    ensure!(records.len() == 1, "{} records", records.len());
    ensure!(records[0].key.as_deref() == Some(&b"key"[..]), "key");
    ensure!(records[0].value.as_deref() == Some(&b"value"[..]), "value");
    ensure!(records[0].timestamp == 1_700_000_000_000, "timestamp");
    assert_healthy(&broker, "after-everything")
}
