//! Chunk lengths drawn from a seed byte, so that a target feeds the same bytes cut in
//! different places (a reader must not depend on how reads are cut).

pub struct Chunks {
    state: u32,
    longest: usize,
}

impl Chunks {
    /// Chunks of 1..=`longest` bytes; 0 feeds everything at once.
    pub fn new(longest: u8) -> Self {
        Chunks {
            state: u32::from(longest) | 0x100,
            longest: usize::from(longest),
        }
    }

    /// The next chunk's length, at most `left`.
    pub fn next_len(&mut self, left: usize) -> usize {
        if self.longest == 0 {
            return left;
        }
        self.state = self.state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        (((self.state >> 16) as usize) % self.longest + 1).min(left)
    }
}
