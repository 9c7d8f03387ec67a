//! Random identifiers: uuids for instances, agents and lock owners, and
//! unguessable token material. Uses `ring`'s system RNG, which the build
//! already has through rustls, instead of another crate.

use ring::rand::{SecureRandom, SystemRandom};

pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .expect("system random number generator failed");
    out
}

/// A random version-4 UUID in the usual 8-4-4-4-12 hex form.
pub(crate) fn uuid() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
