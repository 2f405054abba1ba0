//! The Merkle tree of RFC 6962 §2.1 with blake3 as the hash: leaf = H(0x00 ‖ entry),
//! node = H(0x01 ‖ left ‖ right), the empty tree's root = H(""); inclusion and consistency
//! proofs (RFC 6962 §2.1.1–2.1.2) and their verification (RFC 9162 §2.1.3.2, §2.1.4.2).
//!
//! It owns the hashing and proof arithmetic only; it must not know what an entry means.
//! Proof generation follows the RFC's recursive definitions; verification follows RFC
//! 9162's iterative algorithms, so the two cross-check each other in the tests.

pub type Hash = [u8; 32];

/// The leaf hash of one canonical entry.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[0x00]);
    hasher.update(entry);
    *hasher.finalize().as_bytes()
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[0x01]);
    hasher.update(left);
    hasher.update(right);
    *hasher.finalize().as_bytes()
}

fn empty_root() -> Hash {
    *blake3::hash(b"").as_bytes()
}

/// The largest power of two smaller than `n` (n ≥ 2): where RFC 6962 splits a tree.
fn split(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// MTH(D[n]) over leaf hashes.
pub fn merkle_root(leaves: &[Hash]) -> Hash {
    let mut builder = RootBuilder::default();
    for leaf in leaves {
        builder.push(*leaf);
    }
    builder.root()
}

/// Roots of a growing tree in O(log n) memory: the roots of the perfect subtrees that
/// make up the tree so far, largest first. Pushing is amortised O(1) hashes and a root is
/// O(log n), so a verifier can check a checkpoint at every size in one pass.
#[derive(Debug, Clone, Default)]
pub struct RootBuilder {
    /// (height, hash) of each perfect subtree, heights strictly decreasing.
    frontier: Vec<(u32, Hash)>,
    size: u64,
}

impl RootBuilder {
    pub fn push(&mut self, leaf: Hash) {
        let mut node = (0, leaf);
        while let Some(&(height, left)) = self.frontier.last() {
            if height != node.0 {
                break;
            }
            self.frontier.pop();
            node = (height + 1, node_hash(&left, &node.1));
        }
        self.frontier.push(node);
        self.size += 1;
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The perfect subtrees (level, index) a tree of `size` leaves is made of, largest
    /// first: one per bit of `size`.
    pub fn frontier_of(size: u64) -> Vec<(u32, u64)> {
        let mut start = 0u64;
        let mut keys = Vec::new();
        for level in (0..u64::BITS).rev() {
            if size & (1 << level) != 0 {
                keys.push((level, start >> level));
                start += 1 << level;
            }
        }
        keys
    }

    /// A builder that continues a tree of `size` leaves from the hashes of its perfect
    /// subtrees ((level, hash), largest first, as [`RootBuilder::frontier_of`] names them).
    pub fn resume(size: u64, frontier: Vec<(u32, Hash)>) -> Self {
        Self { frontier, size }
    }

    /// MTH of the leaves pushed so far: the subtrees folded right to left.
    pub fn root(&self) -> Hash {
        let mut subtrees = self.frontier.iter().rev();
        let Some(&(_, mut root)) = subtrees.next() else { return empty_root() };
        for (_, left) in subtrees {
            root = node_hash(left, &root);
        }
        root
    }
}

/// PATH(m, D[n]): the inclusion proof of leaf `index` in the tree of `leaves`.
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Vec<Hash> {
    assert!(index < leaves.len(), "index within the tree");
    if leaves.len() == 1 {
        return Vec::new();
    }
    let k = split(leaves.len());
    if index < k {
        let mut path = inclusion_proof(&leaves[..k], index);
        path.push(merkle_root(&leaves[k..]));
        path
    } else {
        let mut path = inclusion_proof(&leaves[k..], index - k);
        path.push(merkle_root(&leaves[..k]));
        path
    }
}

/// PROOF(m, D[n]): the consistency proof from the first `old_size` leaves to all of them.
pub fn consistency_proof(leaves: &[Hash], old_size: usize) -> Vec<Hash> {
    assert!(old_size >= 1 && old_size <= leaves.len(), "0 < old_size <= size");
    subproof(old_size, leaves, true)
}

fn subproof(m: usize, leaves: &[Hash], complete: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        return if complete { Vec::new() } else { vec![merkle_root(leaves)] };
    }
    let k = split(n);
    if m <= k {
        let mut proof = subproof(m, &leaves[..k], complete);
        proof.push(merkle_root(&leaves[k..]));
        proof
    } else {
        let mut proof = subproof(m - k, &leaves[k..], false);
        proof.push(merkle_root(&leaves[..k]));
        proof
    }
}

/// A store of perfect subtree hashes: `node(level, index)` is MTH of leaves
/// `[index·2^level, (index+1)·2^level)` (level 0: the leaf hashes). With one, the proofs
/// below read O(log n) hashes instead of every leaf.
pub trait SubtreeHashes {
    fn node(&self, level: u32, index: u64) -> Hash;
}

/// Which subtree hashes a computation over a [`SubtreeHashes`] reads. They depend on the
/// sizes and indices only, never on hash values, so a store can run a proof once with
/// this to learn what to fetch, fetch it in one go, then run it again on what it fetched.
#[derive(Debug, Default)]
pub struct NeededSubtrees(std::cell::RefCell<Vec<(u32, u64)>>);

impl NeededSubtrees {
    pub fn into_keys(self) -> Vec<(u32, u64)> {
        let mut keys = self.0.into_inner();
        keys.sort_unstable();
        keys.dedup();
        keys
    }
}

impl SubtreeHashes for NeededSubtrees {
    fn node(&self, level: u32, index: u64) -> Hash {
        self.0.borrow_mut().push((level, index));
        [0; 32]
    }
}

impl SubtreeHashes for std::collections::HashMap<(u32, u64), Hash> {
    fn node(&self, level: u32, index: u64) -> Hash {
        // A key missing here is a store that fetched less than `NeededSubtrees` named.
        self.get(&(level, index)).copied().unwrap_or_else(|| panic!("subtree ({level}, {index}) was not fetched"))
    }
}

/// MTH(D[start:end]) by RFC 6962's recursion, reading a perfect aligned subtree whole.
pub fn range_root(nodes: &impl SubtreeHashes, start: u64, end: u64) -> Hash {
    let n = end - start;
    match n {
        0 => empty_root(),
        n if n.is_power_of_two() && start.is_multiple_of(n) => nodes.node(n.trailing_zeros(), start / n),
        n => {
            let k = split(n as usize) as u64;
            node_hash(&range_root(nodes, start, start + k), &range_root(nodes, start + k, end))
        }
    }
}

/// PATH(index, D[size]) from stored subtrees: the same proof as [`inclusion_proof`].
pub fn inclusion_proof_from(nodes: &impl SubtreeHashes, index: u64, size: u64) -> Vec<Hash> {
    assert!(index < size, "index within the tree");
    fn path(nodes: &impl SubtreeHashes, index: u64, start: u64, end: u64) -> Vec<Hash> {
        if end - start == 1 {
            return Vec::new();
        }
        let k = split((end - start) as usize) as u64;
        if index < start + k {
            let mut proof = path(nodes, index, start, start + k);
            proof.push(range_root(nodes, start + k, end));
            proof
        } else {
            let mut proof = path(nodes, index, start + k, end);
            proof.push(range_root(nodes, start, start + k));
            proof
        }
    }
    path(nodes, index, 0, size)
}

/// PROOF(old_size, D[size]) from stored subtrees: the same proof as [`consistency_proof`].
pub fn consistency_proof_from(nodes: &impl SubtreeHashes, old_size: u64, size: u64) -> Vec<Hash> {
    assert!(old_size >= 1 && old_size <= size, "0 < old_size <= size");
    fn subproof(nodes: &impl SubtreeHashes, m: u64, start: u64, end: u64, complete: bool) -> Vec<Hash> {
        let n = end - start;
        if m == n {
            return if complete { Vec::new() } else { vec![range_root(nodes, start, end)] };
        }
        let k = split(n as usize) as u64;
        if m <= k {
            let mut proof = subproof(nodes, m, start, start + k, complete);
            proof.push(range_root(nodes, start + k, end));
            proof
        } else {
            let mut proof = subproof(nodes, m - k, start + k, end, false);
            proof.push(range_root(nodes, start, start + k));
            proof
        }
    }
    subproof(nodes, old_size, 0, size, true)
}

/// The perfect subtrees completed by appending the leaf at `index` whose hash is `leaf`:
/// (level, index, hash) for every level ≥ 1 whose last leaf it is, bottom up. `left(level,
/// index)` gives the stored left sibling on the way up.
pub fn completed_subtrees(index: u64, leaf: Hash, mut left: impl FnMut(u32, u64) -> Hash) -> Vec<(u32, u64, Hash)> {
    let (mut level, mut position, mut hash) = (0u32, index, leaf);
    let mut completed = Vec::new();
    while position % 2 == 1 {
        hash = node_hash(&left(level, position - 1), &hash);
        level += 1;
        position /= 2;
        completed.push((level, position, hash));
    }
    completed
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofError {
    IndexOutOfRange,
    BadSizes,
    WrongLength,
    RootMismatch,
}

impl std::fmt::Display for ProofError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProofError::IndexOutOfRange => "the index is not inside the tree",
            ProofError::BadSizes => "the sizes are not in order (0 < old size <= new size)",
            ProofError::WrongLength => "the proof has the wrong number of hashes",
            ProofError::RootMismatch => "the proof does not lead to the expected root",
        })
    }
}

impl std::error::Error for ProofError {}

/// RFC 9162 §2.1.3.2: verifies that `leaf` is entry `index` of the tree of `size` with `root`.
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange);
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return Err(ProofError::WrongLength);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength);
    }
    if r != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// RFC 9162 §2.1.4.2: verifies that the tree of `new_size` with `new_root` extends the tree
/// of `old_size` with `old_root`.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old_size == 0 || old_size > new_size {
        return Err(ProofError::BadSizes);
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if old_root == new_root { Ok(()) } else { Err(ProofError::RootMismatch) };
    }
    let mut path: Vec<Hash> = proof.to_vec();
    if old_size.is_power_of_two() {
        path.insert(0, *old_root);
    }
    let Some((first, rest)) = path.split_first() else { return Err(ProofError::WrongLength) };
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if sn == 0 {
            return Err(ProofError::WrongLength);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength);
    }
    if fr != *old_root || sr != *new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
