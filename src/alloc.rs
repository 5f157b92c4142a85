//! Process-wide allocator settings for long runs of training steps.
//!
//! Layers allocate their outputs and gradients afresh every step (megabytes each at
//! batch 128). glibc serves blocks that large with `mmap` and hands them back with
//! `munmap` when freed, so the next step takes a page fault for every 4 KiB it writes:
//! measured on resnet20 inference at batch 128, 2 threads, a quarter of the step went to
//! faults (2,560 → 3,350 images/s with the setting below; BENCHMARKS.md). Raising the
//! mmap threshold to its maximum (32 MiB) and never trimming the heap keeps freed blocks
//! in the process for the next step, and one arena for all threads keeps the blocks that
//! rayon's workers free as well (their own arenas shrink eagerly); the peak resident memory does not grow (the
//! steady state reuses the same blocks).

/// Keeps freed blocks of up to 32 MiB for reuse instead of returning them to the
/// system, in one arena for all threads (a worker thread's own arena gives its free
/// space back to the system: 8,500 page faults per resnet20 training step before, 250
/// after). Returns whether the setting took (false off glibc, where nothing is done).
/// Call once at start-up, before the heavy work; the `strata` binary does.
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes allocator parameters; it is safe to call at any
        // time (glibc takes its own lock) and has no memory-safety preconditions.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1
                && libc::mallopt(libc::M_ARENA_MAX, 1) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_takes_the_settings() {
        assert!(super::keep_freed_memory());
        // Allocation still works after the switch, large and small.
        let big = vec![1.0f32; 3 << 20];
        assert_eq!(big.iter().sum::<f32>(), (3 << 20) as f32);
    }
}
