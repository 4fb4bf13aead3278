//! The byte-level envelope of remote storage requests and responses: snappy block format with
//! the decompressed size checked before anything is allocated, the `Content-Type` negotiation
//! of Remote-Write 1.0/2.0, and the frames of a streamed remote-read response (uvarint length,
//! CRC-32C of the message, message).

use super::RemoteError;

/// `Content-Type` media type of every remote-write and remote-read body.
pub const PROTOBUF_CONTENT_TYPE: &str = "application/x-protobuf";
/// `proto=` value of Remote-Write 1.0 (also what an absent parameter means).
pub const PROTO_V1: &str = "prometheus.WriteRequest";
/// `proto=` value of Remote-Write 2.0.
pub const PROTO_V2: &str = "io.prometheus.write.v2.Request";
/// `Content-Type` of a streamed remote-read response.
pub const STREAMED_CONTENT_TYPE: &str =
    "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse";

/// Which remote-write message a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteProto {
    V1,
    V2,
}

impl WriteProto {
    /// For metrics and logs: `1.0` or `2.0`.
    pub fn as_str(self) -> &'static str {
        match self {
            WriteProto::V1 => "1.0",
            WriteProto::V2 => "2.0",
        }
    }
}

/// The message named by a request's `Content-Type`, as Prometheus's receiver reads it: absent
/// means 1.0; otherwise the media type must be `application/x-protobuf`, and a `proto=`
/// parameter, when present, picks the message.
pub fn parse_content_type(value: Option<&str>) -> Result<WriteProto, RemoteError> {
    let Some(value) = value else { return Ok(WriteProto::V1) };
    let mut parts = value.split(';');
    let media = parts.next().unwrap_or_default().trim();
    if !media.eq_ignore_ascii_case(PROTOBUF_CONTENT_TYPE) {
        return Err(RemoteError::UnsupportedContentType {
            content_type: value.to_string(),
            reason: format!("expected {PROTOBUF_CONTENT_TYPE} as the media type"),
        });
    }
    for param in parts {
        let Some((key, val)) = param.split_once('=') else {
            return Err(RemoteError::UnsupportedContentType {
                content_type: value.to_string(),
                reason: format!("parameter {:?} is not key=value", param.trim()),
            });
        };
        if key.trim().eq_ignore_ascii_case("proto") {
            return match val.trim().trim_matches('"') {
                PROTO_V1 => Ok(WriteProto::V1),
                PROTO_V2 => Ok(WriteProto::V2),
                other => Err(RemoteError::UnsupportedContentType {
                    content_type: value.to_string(),
                    reason: format!(
                        "protobuf message {other:?} is not accepted; accepted: {PROTO_V1}, {PROTO_V2}"
                    ),
                }),
            };
        }
    }
    Ok(WriteProto::V1)
}

/// Whether a `Content-Encoding` is one the receivers read (snappy, or none given, which
/// Prometheus also takes to mean snappy).
pub fn check_content_encoding(value: Option<&str>) -> Result<(), RemoteError> {
    match value {
        None => Ok(()),
        Some(v) if v.trim().eq_ignore_ascii_case("snappy") => Ok(()),
        Some(v) => Err(RemoteError::UnsupportedEncoding(v.to_string())),
    }
}

/// Decompresses a snappy block-format body, refusing before allocating when the length it
/// declares is over `limit` bytes.
pub fn decompress(body: &[u8], limit: usize) -> Result<Vec<u8>, RemoteError> {
    let len = snap::raw::decompress_len(body).map_err(|e| RemoteError::Snappy(e.to_string()))?;
    if len > limit {
        return Err(RemoteError::DecompressedTooLarge { len, limit });
    }
    snap::raw::Decoder::new().decompress_vec(body).map_err(|e| RemoteError::Snappy(e.to_string()))
}

/// Compresses `data` in the snappy block format.
pub fn compress(data: &[u8]) -> Result<Vec<u8>, RemoteError> {
    snap::raw::Encoder::new().compress_vec(data).map_err(|e| RemoteError::Snappy(e.to_string()))
}

/// Appends one streamed-read frame: the message length as a uvarint, the CRC-32C (Castagnoli)
/// of the message as a big-endian `u32`, then the message.
pub fn put_frame(out: &mut Vec<u8>, message: &[u8]) {
    prost::encoding::encode_varint(message.len() as u64, out);
    out.extend_from_slice(&crc32c(message).to_be_bytes());
    out.extend_from_slice(message);
}

/// Splits the first frame off `data`: `(message, rest)`, or an error naming what is wrong.
pub fn next_frame(mut data: &[u8]) -> Result<(&[u8], &[u8]), RemoteError> {
    let len = prost::encoding::decode_varint(&mut data)
        .map_err(|e| RemoteError::Frame(format!("frame length: {e}")))?;
    if data.len() < 4 || ((data.len() - 4) as u64) < len {
        return Err(RemoteError::Frame(format!(
            "frame of {len} bytes, {} left",
            data.len().saturating_sub(4)
        )));
    }
    let (crc, rest) = data.split_at(4);
    let (msg, rest) = rest.split_at(len as usize);
    let want = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32c(msg) != want {
        return Err(RemoteError::Frame("frame checksum mismatch".into()));
    }
    Ok((msg, rest))
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as Go's `crc32.MakeTable(crc32.Castagnoli)`.
pub fn crc32c(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 { 0x82F6_3B78 ^ (c >> 1) } else { c >> 1 };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut crc = !0u32;
    for &b in data {
        crc = TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value() {
        // The standard check value of CRC-32C.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn content_types() {
        let ok = |v: Option<&str>| parse_content_type(v).map_err(|e| e.to_string());
        assert_eq!(ok(None), Ok(WriteProto::V1));
        assert_eq!(ok(Some("application/x-protobuf")), Ok(WriteProto::V1));
        assert_eq!(ok(Some("application/x-protobuf;proto=prometheus.WriteRequest")), Ok(WriteProto::V1));
        assert_eq!(
            ok(Some("application/x-protobuf; proto=io.prometheus.write.v2.Request")),
            Ok(WriteProto::V2)
        );
        let e = ok(Some("application/x-protobuf;proto=io.prometheus.write.v3.Request")).unwrap_err();
        assert!(e.contains("v3") && e.contains("accepted"), "{e}");
        assert!(ok(Some("application/json")).is_err());
        assert!(ok(Some("application/x-protobuf;garbage")).is_err());
    }

    #[test]
    fn decompress_is_bounded() {
        let data = vec![7u8; 100_000];
        let c = compress(&data).unwrap();
        assert_eq!(decompress(&c, 100_000).unwrap(), data);
        let e = decompress(&c, 99_999).unwrap_err();
        assert!(matches!(e, RemoteError::DecompressedTooLarge { len: 100_000, limit: 99_999 }), "{e}");
        // A header declaring 4 GiB in five bytes: refused without allocating.
        let bomb = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        assert!(matches!(decompress(&bomb, 1 << 20), Err(RemoteError::DecompressedTooLarge { .. })));
        for garbage in [&b""[..], b"\x05", b"\x05abc", b"not snappy at all"] {
            assert!(decompress(garbage, 1 << 20).is_err(), "{garbage:?}");
        }
    }

    #[test]
    fn frames_round_trip_and_detect_damage() {
        let mut buf = Vec::new();
        put_frame(&mut buf, b"hello");
        put_frame(&mut buf, b"");
        let (a, rest) = next_frame(&buf).unwrap();
        let (b, rest) = next_frame(rest).unwrap();
        assert_eq!((a, b, rest), (&b"hello"[..], &b""[..], &b""[..]));
        let mut bad = buf.clone();
        bad[6] ^= 1;
        assert!(next_frame(&bad).is_err());
        assert!(next_frame(&buf[..4]).is_err());
    }
}
