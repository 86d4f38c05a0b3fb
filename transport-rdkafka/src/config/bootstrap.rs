//! Bootstrap server lists: each entry `[PROTOCOL://]host:port`, the
//! listener prefix (if any) matching `security.protocol`, and never
//! credentials; errors say what is wrong and how to write it.

/// The listener prefixes librdkafka accepts before a bootstrap server
/// (`PROTOCOL://host:port`), which must match `security.protocol`.
const LISTENER_PROTOCOLS: [&str; 4] = ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];

/// Checks a bootstrap server list; the error says what is wrong and how to
/// write it.
pub(super) fn check_bootstrap(servers: &str, security_protocol: &str) -> Result<(), String> {
    let entries: Vec<&str> = servers
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    if entries.is_empty() {
        return Err(
            "is empty: list the cluster's brokers as host:port separated by commas, \
                    for example `kafka-1:9092,kafka-2:9092`"
                .to_owned(),
        );
    }
    for entry in entries {
        if entry.contains('@') {
            // Possibly `user:password@host`: the entry is not repeated.
            return Err(
                "has an entry with `@`: entries are host:port only; credentials go in \
                        sasl.username and sasl.password"
                    .to_owned(),
            );
        }
        check_server(entry, security_protocol).map_err(|why| {
            format!(
                "entry `{entry}` {why}; write host:port separated by commas, for example \
                 `kafka-1:9092,[::1]:9092`"
            )
        })?;
    }
    Ok(())
}

/// Checks one `[PROTOCOL://]host:port` entry.
fn check_server(entry: &str, security_protocol: &str) -> Result<(), String> {
    if entry.chars().any(char::is_whitespace) {
        return Err("contains whitespace".to_owned());
    }
    let address = match entry.split_once("://") {
        None => entry,
        Some((scheme, rest)) => {
            let known = LISTENER_PROTOCOLS
                .iter()
                .any(|p| p.eq_ignore_ascii_case(scheme));
            if !known {
                return Err(format!(
                    "has the scheme `{scheme}://`, which is not a Kafka listener protocol \
                     (librdkafka accepts only PLAINTEXT://, SSL://, SASL_PLAINTEXT:// and \
                     SASL_SSL://, matching security.protocol)"
                ));
            }
            if !scheme.eq_ignore_ascii_case(security_protocol.trim()) {
                return Err(format!(
                    "has the listener prefix `{scheme}://` but security.protocol is \
                     `{security_protocol}`: librdkafka ignores a broker whose prefix does not \
                     match; drop the prefix or set security.protocol"
                ));
            }
            rest
        }
    };
    if address.contains('/') {
        return Err("has a path (`/`)".to_owned());
    }
    let port = if let Some(inside) = address.strip_prefix('[') {
        let Some((v6, after)) = inside.split_once(']') else {
            return Err("has `[` without `]`".to_owned());
        };
        let addr = v6.split_once('%').map_or(v6, |(a, _zone)| a);
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("has `[{v6}]`, which is not an IPv6 address"));
        }
        let Some(port) = after.strip_prefix(':') else {
            return Err("has no port after the IPv6 address".to_owned());
        };
        port
    } else {
        let Some((host, port)) = address.rsplit_once(':') else {
            return Err("has no port".to_owned());
        };
        if host.contains(':') {
            return Err(
                "looks like an IPv6 address without brackets (write `[::1]:9092`)".to_owned(),
            );
        }
        if host.is_empty() {
            return Err("has no host".to_owned());
        }
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        {
            return Err(format!(
                "has the host `{host}`, which is not a host name or address"
            ));
        }
        port
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!(
            "has the port `{port}`, not a number from 1 to 65535"
        )),
    }
}
