//! `secret()` and `uuid()`: values derived from the instance's seed with HMAC-SHA-256, the
//! same on every render, so nothing generated needs storing.

use hmac::{Hmac, Mac};
use minijinja::ErrorKind;
use sha2::Sha256;

use super::{SecretSeed, MAX_SECRET_LENGTH, MIN_SECRET_LENGTH};

type HmacSha256 = Hmac<Sha256>;

fn hmac(seed: &SecretSeed, parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(&seed.0) {
        Ok(mac) => mac,
        Err(_) => return [0; 32],
    };
    for part in parts {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

const ALPHANUMERIC: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// HMAC-SHA256(seed, name, length, counter) blocks, mapped to alphanumerics by rejection
/// sampling (bytes ≥ 248 are skipped) so every character is uniform.
pub(super) fn derive_secret(
    seed: &SecretSeed,
    name: &str,
    length: usize,
) -> Result<String, minijinja::Error> {
    if name.is_empty() {
        return Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            "secret() needs a non-empty name",
        ));
    }
    if !(MIN_SECRET_LENGTH..=MAX_SECRET_LENGTH).contains(&length) {
        return Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!(
                "secret() length must be {MIN_SECRET_LENGTH}..={MAX_SECRET_LENGTH}, not {length}"
            ),
        ));
    }
    let length_bytes = (length as u64).to_be_bytes();
    let mut out = String::with_capacity(length);
    for counter in 0u32.. {
        let block = hmac(
            seed,
            &[
                b"spin-osb secret v1",
                name.as_bytes(),
                &length_bytes,
                &counter.to_be_bytes(),
            ],
        );
        for byte in block {
            if byte < 248 {
                out.push(char::from(ALPHANUMERIC[usize::from(byte % 62)]));
                if out.len() == length {
                    return Ok(out);
                }
            }
        }
    }
    Err(minijinja::Error::new(
        ErrorKind::InvalidOperation,
        "secret() failed",
    ))
}

/// A version-4-shaped UUID from HMAC-SHA256(seed, name): as unpredictable as a random one to
/// anyone without the seed, and stable across renders.
pub(super) fn derive_uuid(seed: &SecretSeed, name: &str) -> Result<String, minijinja::Error> {
    if name.is_empty() {
        return Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            "uuid() needs a non-empty name",
        ));
    }
    let mut b = hmac(seed, &[b"spin-osb uuid v1", name.as_bytes()]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b[..16].iter().map(|byte| format!("{byte:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}
