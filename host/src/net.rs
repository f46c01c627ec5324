//! IP allow-list entries.

use ipnet::IpNet;

/// Parses an allow-list entry: a CIDR (`10.0.0.0/8`) or a single address,
/// which stands for itself (`/32` or `/128`).
pub fn parse_cidr(entry: &str) -> Result<IpNet, String> {
    let entry = entry.trim();
    entry
        .parse::<IpNet>()
        .or_else(|_| entry.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{entry:?} is not a CIDR such as 10.0.0.0/8 or 2001:db8::/32"))
}

/// Parses allow-list entries and writes them in canonical form.
pub fn normalize_cidrs(entries: &[String]) -> Result<Vec<String>, String> {
    entries
        .iter()
        .map(|entry| parse_cidr(entry).map(|net| net.to_string()))
        .collect()
}
