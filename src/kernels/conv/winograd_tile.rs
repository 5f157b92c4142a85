//! The transforms of Winograd F(2×2, 3×3) on one tile ([`super::winograd`]): the filter
//! `G g Gᵀ`, the input `Bᵀ d B` and the output `Aᵀ m A`, in plain scalar code — the
//! definition the vectorized kernels follow and are tested against.

use super::geom::ConvGeom;

/// Positions of a transformed 4×4 tile.
pub(crate) const XI: usize = 16;

/// `U = G f Gᵀ` of one 3×3 filter `f` (row-major), as `u[4·i + j]`.
pub(crate) fn filter_tile(f: &[f32]) -> [f32; XI] {
    // t = G f (4×3), then u = t Gᵀ (4×4).
    let mut t = [[0.0f32; 3]; 4];
    for s in 0..3 {
        let (f0, f1, f2) = (f[s], f[3 + s], f[6 + s]);
        t[0][s] = f0;
        t[1][s] = 0.5 * (f0 + f1 + f2);
        t[2][s] = 0.5 * (f0 - f1 + f2);
        t[3][s] = f2;
    }
    let mut u = [0.0f32; XI];
    for (i, ti) in t.iter().enumerate() {
        u[4 * i] = ti[0];
        u[4 * i + 1] = 0.5 * (ti[0] + ti[1] + ti[2]);
        u[4 * i + 2] = 0.5 * (ti[0] - ti[1] + ti[2]);
        u[4 * i + 3] = ti[2];
    }
    u
}

/// The transformed filter of output channel `k` and input channel `c` (zero past
/// `c_in`).
pub(crate) fn filter_of(g: &ConvGeom, w: &[f32], k: usize, c: usize) -> [f32; XI] {
    if c < g.c_in {
        filter_tile(&w[(k * g.c_in + c) * 9..(k * g.c_in + c) * 9 + 9])
    } else {
        [0.0; XI]
    }
}

/// `Bᵀ d B` of one 4×4 block `d[r][c]`, as `out[4·i + j]`.
pub(crate) fn input_tile(d: &[[f32; 4]; 4]) -> [f32; XI] {
    let mut u = [[0.0f32; 4]; 4];
    for (ur, dr) in u.iter_mut().zip(d) {
        *ur = [dr[0] - dr[2], dr[1] + dr[2], dr[2] - dr[1], dr[1] - dr[3]];
    }
    let mut out = [0.0f32; XI];
    for j in 0..4 {
        out[j] = u[0][j] - u[2][j];
        out[4 + j] = u[1][j] + u[2][j];
        out[8 + j] = u[2][j] - u[1][j];
        out[12 + j] = u[1][j] - u[3][j];
    }
    out
}

/// `Aᵀ m A` of one transformed tile `m[4·i + j]`: the 2×2 outputs `[y00, y01, y10, y11]`.
pub(crate) fn output_tile(m: &[f32; XI]) -> [f32; 4] {
    let mut s = [[0.0f32; 4]; 2];
    for j in 0..4 {
        s[0][j] = m[j] + m[4 + j] + m[8 + j];
        s[1][j] = m[4 + j] - m[8 + j] - m[12 + j];
    }
    [
        s[0][0] + s[0][1] + s[0][2],
        s[0][1] - s[0][2] - s[0][3],
        s[1][0] + s[1][1] + s[1][2],
        s[1][1] - s[1][2] - s[1][3],
    ]
}
