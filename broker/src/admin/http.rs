//! The little of HTTP/1.1 the admin listener needs: parse a GET (or HEAD) request's head and
//! write a whole response. Pure: bytes in, a request or an error out; never panics on any
//! input (a property test feeds it arbitrary bytes).
//!
//! Deliberately absent: request bodies, chunked encoding, keep-alive (every response closes
//! the connection, which Prometheus handles), header values (only the head's end is looked
//! for). A scraper sends a few hundred bytes; anything larger than [`REQUEST_BYTES_MAX`] is
//! refused.

use std::fmt::Write;

/// Largest request head accepted (request line and headers).
pub const REQUEST_BYTES_MAX: usize = 8 << 10;

/// The methods served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// The body is sent.
    Get,
    /// Only the head is sent.
    Head,
}

/// A parsed request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// GET or HEAD.
    pub method: Method,
    /// The target's path, without its query string.
    pub path: &'a str,
}

/// Why a request head cannot be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The head has not ended yet: read more.
    #[error("request head incomplete")]
    Incomplete,
    /// The head is longer than [`REQUEST_BYTES_MAX`] (431).
    #[error("request head exceeds {REQUEST_BYTES_MAX} bytes")]
    TooLarge,
    /// Not an HTTP/1.x request line or header (400).
    #[error("bad request: {0}")]
    Bad(&'static str),
    /// A method other than GET or HEAD (405).
    #[error("method not allowed")]
    MethodNotAllowed,
}

impl ParseError {
    /// The status line's code and reason for the answer to this error.
    pub fn status(self) -> Status {
        match self {
            ParseError::Incomplete | ParseError::Bad(_) => Status::BAD_REQUEST,
            ParseError::TooLarge => Status::HEADERS_TOO_LARGE,
            ParseError::MethodNotAllowed => Status::METHOD_NOT_ALLOWED,
        }
    }
}

/// Parses the head at the start of `buf`, once it has ended (an empty line).
///
/// # Errors
/// [`ParseError::Incomplete`] while the head has not ended and `buf` is within the limit; the
/// other variants when the request cannot be served.
pub fn parse(buf: &[u8]) -> Result<Request<'_>, ParseError> {
    let Some(head_len) = find(buf, b"\r\n\r\n") else {
        return Err(if buf.len() >= REQUEST_BYTES_MAX {
            ParseError::TooLarge
        } else {
            ParseError::Incomplete
        });
    };
    if head_len > REQUEST_BYTES_MAX {
        return Err(ParseError::TooLarge);
    }
    let head = std::str::from_utf8(&buf[..head_len]).map_err(|_| ParseError::Bad("not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::Bad(
            "request line is not: method target version",
        ));
    };
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(ParseError::Bad("not HTTP/1.0 or HTTP/1.1"));
    }
    if !target.starts_with('/') {
        return Err(ParseError::Bad("target is not an absolute path"));
    }
    for header in lines {
        match header.split_once(':') {
            Some((name, _)) if !name.is_empty() && !name.contains([' ', '\t']) => {}
            _ => return Err(ParseError::Bad("malformed header line")),
        }
    }
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        m if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) => {
            return Err(ParseError::MethodNotAllowed)
        }
        _ => return Err(ParseError::Bad("bad method")),
    };
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    Ok(Request { method, path })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A response status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// The code.
    pub code: u16,
    /// The reason phrase.
    pub reason: &'static str,
}

impl Status {
    /// 200.
    pub const OK: Status = Status {
        code: 200,
        reason: "OK",
    };
    /// 400.
    pub const BAD_REQUEST: Status = Status {
        code: 400,
        reason: "Bad Request",
    };
    /// 404.
    pub const NOT_FOUND: Status = Status {
        code: 404,
        reason: "Not Found",
    };
    /// 405.
    pub const METHOD_NOT_ALLOWED: Status = Status {
        code: 405,
        reason: "Method Not Allowed",
    };
    /// 408: the head did not arrive in time.
    pub const REQUEST_TIMEOUT: Status = Status {
        code: 408,
        reason: "Request Timeout",
    };
    /// 431.
    pub const HEADERS_TOO_LARGE: Status = Status {
        code: 431,
        reason: "Request Header Fields Too Large",
    };
    /// 503: not ready, or the metrics could not be gathered in time.
    pub const UNAVAILABLE: Status = Status {
        code: 503,
        reason: "Service Unavailable",
    };
}

/// A whole response: status line, headers (length, type, `Connection: close`) and, unless
/// `method` is HEAD, the body.
pub fn response(status: Status, content_type: &str, body: &str, method: Method) -> Vec<u8> {
    let mut head = String::with_capacity(128);
    let _ = write!(
        head,
        "HTTP/1.1 {} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n",
        status.code,
        status.reason,
        body.len()
    );
    if status == Status::METHOD_NOT_ALLOWED {
        head.push_str("Allow: GET, HEAD\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    if method == Method::Get {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scrape_request_parses_with_its_query_string_dropped() {
        let head = b"GET /metrics?x=1 HTTP/1.1\r\nHost: 127.0.0.1:9644\r\n\
                     User-Agent: Prometheus/2.42.0\r\nAccept: text/plain\r\n\r\n";
        assert_eq!(
            parse(head),
            Ok(Request {
                method: Method::Get,
                path: "/metrics"
            })
        );
        assert_eq!(
            parse(b"HEAD /health HTTP/1.0\r\n\r\n"),
            Ok(Request {
                method: Method::Head,
                path: "/health"
            })
        );
    }

    #[test]
    fn an_unfinished_head_asks_for_more_until_the_limit() {
        assert_eq!(
            parse(b"GET /metrics HTTP/1.1\r\n"),
            Err(ParseError::Incomplete)
        );
        assert_eq!(parse(b""), Err(ParseError::Incomplete));
        let long = vec![b'a'; REQUEST_BYTES_MAX];
        assert_eq!(parse(&long), Err(ParseError::TooLarge));
    }

    #[test]
    fn bad_requests_are_refused_with_their_status() {
        let cases: [(&[u8], u16); 7] = [
            (b"POST /metrics HTTP/1.1\r\n\r\n", 405),
            (b"GET metrics HTTP/1.1\r\n\r\n", 400),
            (b"GET /metrics HTTP/2\r\n\r\n", 400),
            (b"GET /metrics\r\n\r\n", 400),
            (b"GET  /metrics HTTP/1.1\r\n\r\n", 400),
            (b"GET /metrics HTTP/1.1\r\nno colon\r\n\r\n", 400),
            (b"\xff /metrics HTTP/1.1\r\n\r\n", 400),
        ];
        for (head, code) in cases {
            let error = parse(head).expect_err("refused");
            assert_eq!(
                error.status().code,
                code,
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[test]
    fn responses_carry_length_and_close_and_head_has_no_body() {
        let get = response(Status::OK, "text/plain", "ok\n", Method::Get);
        assert_eq!(
            String::from_utf8(get).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\
             Connection: close\r\n\r\nok\n"
        );
        let head = response(Status::OK, "text/plain", "ok\n", Method::Head);
        assert!(String::from_utf8(head)
            .unwrap()
            .ends_with("Content-Length: 3\r\nConnection: close\r\n\r\n"));
    }

    proptest::proptest! {
        /// Any bytes at all: an answer, never a panic, and a path only from a whole head.
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
            if let Ok(request) = parse(&bytes) {
                proptest::prop_assert!(request.path.starts_with('/'));
                proptest::prop_assert!(find(&bytes, b"\r\n\r\n").is_some());
            }
        }

        /// Request-like text with random pieces: still never a panic.
        #[test]
        fn parse_never_panics_on_near_misses(
            method in "(GET|HEAD|POST|get|)",
            target in "[ -~]{0,40}",
            version in "(HTTP/1.1|HTTP/1.0|HTTP/9|)",
            headers in proptest::collection::vec("[ -~]{0,30}", 0..5),
            end in "(\r\n\r\n|\r\n|\n\n|)",
        ) {
            let mut head = format!("{method} {target} {version}");
            for h in headers {
                head.push_str("\r\n");
                head.push_str(&h);
            }
            head.push_str(&end);
            let _ = parse(head.as_bytes());
        }
    }
}
