//! Small AVX-512 building blocks shared by several kernels.

/// Transposes a 16 × 16 block of 32-bit elements held in 16 registers: `r[a]` lane `b`
/// becomes `r[b]` lane `a` (32-bit and 64-bit interleaves, then two rounds of 128-bit
/// lane shuffles).
///
/// # Safety
/// The CPU must support AVX-512F. There is nothing else to uphold: only `r` and
/// registers are touched.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) unsafe fn transpose_16x16(r: &mut [std::arch::x86_64::__m512i; 16]) {
    use std::arch::x86_64::*;
    let mut t = [_mm512_setzero_si512(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    // u[4i + c], 128-bit lane L: element 4L + c of rows 4i .. 4i + 3.
    let mut u = [_mm512_setzero_si512(); 16];
    for i in 0..4 {
        u[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    for c in 0..4 {
        let (a, b, cc, d) = (u[c], u[4 + c], u[8 + c], u[12 + c]);
        let p = _mm512_shuffle_i32x4::<0x88>(a, b);
        let q = _mm512_shuffle_i32x4::<0xDD>(a, b);
        let rr = _mm512_shuffle_i32x4::<0x88>(cc, d);
        let ss = _mm512_shuffle_i32x4::<0xDD>(cc, d);
        r[c] = _mm512_shuffle_i32x4::<0x88>(p, rr);
        r[8 + c] = _mm512_shuffle_i32x4::<0xDD>(p, rr);
        r[4 + c] = _mm512_shuffle_i32x4::<0x88>(q, ss);
        r[12 + c] = _mm512_shuffle_i32x4::<0xDD>(q, ss);
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    #[test]
    fn transpose_16x16_swaps_rows_and_lanes() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            return;
        }
        let m: Vec<i32> = (0..256).collect();
        // SAFETY: AVX-512F checked above; 16 loads and stores of 16 i32 within `m`/`out`.
        unsafe {
            use std::arch::x86_64::*;
            let mut r: [__m512i; 16] =
                std::array::from_fn(|a| _mm512_loadu_si512(m.as_ptr().add(16 * a) as *const _));
            super::transpose_16x16(&mut r);
            let mut out = vec![0i32; 256];
            for (b, rb) in r.iter().enumerate() {
                _mm512_storeu_si512(out.as_mut_ptr().add(16 * b) as *mut _, *rb);
            }
            for a in 0..16 {
                for b in 0..16 {
                    assert_eq!(out[16 * b + a], m[16 * a + b], "({a}, {b})");
                }
            }
        }
    }
}
