//! Many threads released at once, for tests that race identical or conflicting requests.

use std::sync::{Arc, Barrier};
use std::thread;

/// Runs `f(0..n)` on `n` threads that start together (a barrier releases them) and
/// returns the results in order. A panicking thread fails the caller.
pub fn concurrently<T: Send + 'static>(
    n: usize,
    f: impl Fn(usize) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let f = Arc::new(f);
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let f = f.clone();
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                f(i)
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("worker thread panicked"))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn results_come_back_in_order() {
        assert_eq!(
            super::concurrently(8, |i| i * 2),
            [0, 2, 4, 6, 8, 10, 12, 14]
        );
    }
}
