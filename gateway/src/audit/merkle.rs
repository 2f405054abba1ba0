//! The Merkle tree of RFC 6962 §2.1 with blake3 as the hash: leaf = H(0x00 ‖ entry),
//! node = H(0x01 ‖ left ‖ right), the empty tree's root = H("").
//!
//! It owns the hashing only; it must not know what an entry means.

/// The leaf hash of one canonical entry.
pub fn leaf_hash(entry: &[u8]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[0x00]);
    hasher.update(entry);
    *hasher.finalize().as_bytes()
}

fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[0x01]);
    hasher.update(left);
    hasher.update(right);
    *hasher.finalize().as_bytes()
}

/// MTH(D[n]) over leaf hashes: split at the largest power of two smaller than n.
pub fn merkle_root(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves.len() {
        0 => *blake3::hash(b"").as_bytes(),
        1 => leaves[0],
        n => {
            let split = largest_power_of_two_below(n);
            node_hash(&merkle_root(&leaves[..split]), &merkle_root(&leaves[split..]))
        }
    }
}

fn largest_power_of_two_below(n: usize) -> usize {
    debug_assert!(n >= 2);
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_follow_rfc6962_shape() {
        let leaves: Vec<[u8; 32]> = (0u8..7).map(|i| leaf_hash(&[i])).collect();
        assert_eq!(merkle_root(&[]), *blake3::hash(b"").as_bytes());
        assert_eq!(merkle_root(&leaves[..1]), leaves[0]);
        assert_eq!(merkle_root(&leaves[..2]), node_hash(&leaves[0], &leaves[1]));
        // Size 3: the left subtree holds 2 leaves, the right 1.
        assert_eq!(merkle_root(&leaves[..3]), node_hash(&node_hash(&leaves[0], &leaves[1]), &leaves[2]));
        // Size 7: left 4, right 3 (split 2 + 1).
        let left = node_hash(&node_hash(&leaves[0], &leaves[1]), &node_hash(&leaves[2], &leaves[3]));
        let right = node_hash(&node_hash(&leaves[4], &leaves[5]), &leaves[6]);
        assert_eq!(merkle_root(&leaves), node_hash(&left, &right));
        // Leaves and nodes are domain-separated.
        assert_ne!(leaf_hash(&[1; 64]), node_hash(&[1; 32], &[1; 32]));
    }
}
