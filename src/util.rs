//! Small shared helpers.

use rand::Rng;

/// A random identifier for stream ids, resources and IQ ids: 16 characters of
/// URL-safe alphabet (~95 bits).
pub fn random_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
    let mut rng = rand::thread_rng();
    (0..16)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}
