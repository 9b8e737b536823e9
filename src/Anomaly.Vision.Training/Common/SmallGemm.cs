using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Anomaly.Vision.Training;

/// <summary>
/// fp32 C = A·B (or C += A·B) on the calling thread for small products whose B has contiguous rows, without packing.
/// </summary>
/// <remarks>
/// Design: CFlow's training step multiplies weights by 64 fibers, so every weight is used only 64 times per product;
/// packing an operand (as <see cref="PackedGemm"/> does for CFA's large products) would cost about as much as the
/// arithmetic. Here the kernel reads B's rows in place (64 contiguous columns, four 512-bit vectors, per step of k)
/// and broadcasts A's elements straight from memory through its strides, so a transposed A costs nothing, and writes
/// (or adds) its 6 × 64 tile of accumulators straight into C. Columns past the last 64 (and all columns without
/// 512-bit vectors) go through 6 × 16 tiles of 256-bit vectors, the last few one at a time. Rows beyond a multiple of
/// 6 reuse the kernel with a repeated row that is not stored. Every element of C is one dot product in k order.
/// </remarks>
internal static class SmallGemm
{
    private const int Rows = 6;

    /// <summary>C[m × n] = A·B, or C += A·B when <paramref name="accumulate"/>.</summary>
    /// <param name="m">Rows of A and C.</param>
    /// <param name="n">Columns of B and C.</param>
    /// <param name="k">Columns of A, rows of B.</param>
    /// <param name="a">A: element (i, j) at <c>i·aRowStride + j·aColumnStride</c>.</param>
    /// <param name="aRowStride">Stride between rows of A.</param>
    /// <param name="aColumnStride">Stride between columns of A.</param>
    /// <param name="b">B: element (j, l) at <c>j·bRowStride + l</c>.</param>
    /// <param name="bRowStride">Stride between rows of B.</param>
    /// <param name="c">C: element (i, l) at <c>i·cRowStride + l</c>.</param>
    /// <param name="cRowStride">Stride between rows of C.</param>
    /// <param name="accumulate">Add to C rather than overwrite it.</param>
    /// <param name="useVector512">The 512-bit kernel (default: when the hardware accelerates it) or the 256-bit one.</param>
    public static unsafe void Multiply(int m, int n, int k, ReadOnlySpan<float> a, int aRowStride, int aColumnStride,
        ReadOnlySpan<float> b, int bRowStride, Span<float> c, int cRowStride, bool accumulate, bool? useVector512 = null)
    {
        if (m <= 0 || n <= 0 || k <= 0)
            throw new ArgumentOutOfRangeException(nameof(m), $"The shapes must be positive (m {m}, n {n}, k {k}).");
        if ((long)(m - 1) * aRowStride + (long)(k - 1) * aColumnStride >= a.Length)
            throw new ArgumentException($"A holds {a.Length} values, too few for {m} × {k} with strides {aRowStride}, {aColumnStride}.", nameof(a));
        if ((long)(k - 1) * bRowStride + n > b.Length)
            throw new ArgumentException($"B holds {b.Length} values, too few for {k} × {n} with row stride {bRowStride}.", nameof(b));
        if ((long)(m - 1) * cRowStride + n > c.Length)
            throw new ArgumentException($"C holds {c.Length} values, too few for {m} × {n} with row stride {cRowStride}.", nameof(c));

        bool wide = useVector512 ?? Vector512.IsHardwareAccelerated;
        // 64-column tiles, then 16-column ones (narrow grids: 16 positions at 128 px), then single columns.
        int wideColumns = wide ? n / 64 * 64 : 0;
        int vectorColumns = n / 16 * 16;
        fixed (float* aBase = a)
        fixed (float* bBase = b)
        fixed (float* cBase = c)
        {
            for (int i = 0; i < m; i += Rows)
            {
                int rows = Math.Min(Rows, m - i);
                float* ai = aBase + (long)i * aRowStride;
                float* ci = cBase + (long)i * cRowStride;
                for (int l = 0; l < wideColumns; l += 64)
                    Tile512(ai, aRowStride, aColumnStride, rows, bBase + l, bRowStride, k, ci + l, cRowStride, accumulate);
                for (int l = wideColumns; l < vectorColumns; l += 16)
                    Tile256(ai, aRowStride, aColumnStride, rows, bBase + l, bRowStride, k, ci + l, cRowStride, accumulate);
                for (int r = 0; r < rows; r++)
                {
                    for (int l = vectorColumns; l < n; l++)
                    {
                        float sum = 0;
                        for (int j = 0; j < k; j++)
                            sum += ai[(long)r * aRowStride + (long)j * aColumnStride] * bBase[(long)j * bRowStride + l];
                        float* target = ci + (long)r * cRowStride + l;
                        *target = accumulate ? *target + sum : sum;
                    }
                }
            }
        }
    }

    /// <summary>Up to 6 rows × 64 columns: 24 accumulators over all of k.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Tile512(float* a, int aRowStride, int aColumnStride, int rows, float* b, int bRowStride, int k,
        float* c, int cRowStride, bool accumulate)
    {
        // Rows past the last are computed from a repeated row and not stored.
        float* a0 = a, a1 = a + Math.Min(1, rows - 1) * (long)aRowStride, a2 = a + Math.Min(2, rows - 1) * (long)aRowStride;
        float* a3 = a + Math.Min(3, rows - 1) * (long)aRowStride, a4 = a + Math.Min(4, rows - 1) * (long)aRowStride;
        float* a5 = a + Math.Min(5, rows - 1) * (long)aRowStride;
        Vector512<float> c00 = default, c01 = default, c02 = default, c03 = default, c10 = default, c11 = default, c12 = default, c13 = default;
        Vector512<float> c20 = default, c21 = default, c22 = default, c23 = default, c30 = default, c31 = default, c32 = default, c33 = default;
        Vector512<float> c40 = default, c41 = default, c42 = default, c43 = default, c50 = default, c51 = default, c52 = default, c53 = default;
        long offset = 0;
        for (int j = 0; j < k; j++, offset += aColumnStride, b += bRowStride)
        {
            var b0 = Vector512.Load(b);
            var b1 = Vector512.Load(b + 16);
            var b2 = Vector512.Load(b + 32);
            var b3 = Vector512.Load(b + 48);
            var x = Vector512.Create(a0[offset]);
            c00 = Vector512.FusedMultiplyAdd(x, b0, c00); c01 = Vector512.FusedMultiplyAdd(x, b1, c01);
            c02 = Vector512.FusedMultiplyAdd(x, b2, c02); c03 = Vector512.FusedMultiplyAdd(x, b3, c03);
            x = Vector512.Create(a1[offset]);
            c10 = Vector512.FusedMultiplyAdd(x, b0, c10); c11 = Vector512.FusedMultiplyAdd(x, b1, c11);
            c12 = Vector512.FusedMultiplyAdd(x, b2, c12); c13 = Vector512.FusedMultiplyAdd(x, b3, c13);
            x = Vector512.Create(a2[offset]);
            c20 = Vector512.FusedMultiplyAdd(x, b0, c20); c21 = Vector512.FusedMultiplyAdd(x, b1, c21);
            c22 = Vector512.FusedMultiplyAdd(x, b2, c22); c23 = Vector512.FusedMultiplyAdd(x, b3, c23);
            x = Vector512.Create(a3[offset]);
            c30 = Vector512.FusedMultiplyAdd(x, b0, c30); c31 = Vector512.FusedMultiplyAdd(x, b1, c31);
            c32 = Vector512.FusedMultiplyAdd(x, b2, c32); c33 = Vector512.FusedMultiplyAdd(x, b3, c33);
            x = Vector512.Create(a4[offset]);
            c40 = Vector512.FusedMultiplyAdd(x, b0, c40); c41 = Vector512.FusedMultiplyAdd(x, b1, c41);
            c42 = Vector512.FusedMultiplyAdd(x, b2, c42); c43 = Vector512.FusedMultiplyAdd(x, b3, c43);
            x = Vector512.Create(a5[offset]);
            c50 = Vector512.FusedMultiplyAdd(x, b0, c50); c51 = Vector512.FusedMultiplyAdd(x, b1, c51);
            c52 = Vector512.FusedMultiplyAdd(x, b2, c52); c53 = Vector512.FusedMultiplyAdd(x, b3, c53);
        }
        Store512(c, accumulate, c00, c01, c02, c03);
        if (rows > 1) Store512(c + cRowStride, accumulate, c10, c11, c12, c13);
        if (rows > 2) Store512(c + 2L * cRowStride, accumulate, c20, c21, c22, c23);
        if (rows > 3) Store512(c + 3L * cRowStride, accumulate, c30, c31, c32, c33);
        if (rows > 4) Store512(c + 4L * cRowStride, accumulate, c40, c41, c42, c43);
        if (rows > 5) Store512(c + 5L * cRowStride, accumulate, c50, c51, c52, c53);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Store512(float* c, bool accumulate, Vector512<float> v0, Vector512<float> v1, Vector512<float> v2, Vector512<float> v3)
    {
        if (accumulate)
        {
            v0 += Vector512.Load(c);
            v1 += Vector512.Load(c + 16);
            v2 += Vector512.Load(c + 32);
            v3 += Vector512.Load(c + 48);
        }
        v0.Store(c);
        v1.Store(c + 16);
        v2.Store(c + 32);
        v3.Store(c + 48);
    }

    /// <summary>Up to 6 rows × 16 columns with 256-bit vectors: 12 accumulators over all of k.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Tile256(float* a, int aRowStride, int aColumnStride, int rows, float* b, int bRowStride, int k,
        float* c, int cRowStride, bool accumulate)
    {
        float* a0 = a, a1 = a + Math.Min(1, rows - 1) * (long)aRowStride, a2 = a + Math.Min(2, rows - 1) * (long)aRowStride;
        float* a3 = a + Math.Min(3, rows - 1) * (long)aRowStride, a4 = a + Math.Min(4, rows - 1) * (long)aRowStride;
        float* a5 = a + Math.Min(5, rows - 1) * (long)aRowStride;
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector256<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        long offset = 0;
        for (int j = 0; j < k; j++, offset += aColumnStride, b += bRowStride)
        {
            var b0 = Vector256.Load(b);
            var b1 = Vector256.Load(b + 8);
            var x = Vector256.Create(a0[offset]);
            c00 = Vector256.FusedMultiplyAdd(x, b0, c00); c01 = Vector256.FusedMultiplyAdd(x, b1, c01);
            x = Vector256.Create(a1[offset]);
            c10 = Vector256.FusedMultiplyAdd(x, b0, c10); c11 = Vector256.FusedMultiplyAdd(x, b1, c11);
            x = Vector256.Create(a2[offset]);
            c20 = Vector256.FusedMultiplyAdd(x, b0, c20); c21 = Vector256.FusedMultiplyAdd(x, b1, c21);
            x = Vector256.Create(a3[offset]);
            c30 = Vector256.FusedMultiplyAdd(x, b0, c30); c31 = Vector256.FusedMultiplyAdd(x, b1, c31);
            x = Vector256.Create(a4[offset]);
            c40 = Vector256.FusedMultiplyAdd(x, b0, c40); c41 = Vector256.FusedMultiplyAdd(x, b1, c41);
            x = Vector256.Create(a5[offset]);
            c50 = Vector256.FusedMultiplyAdd(x, b0, c50); c51 = Vector256.FusedMultiplyAdd(x, b1, c51);
        }
        Store256(c, accumulate, c00, c01);
        if (rows > 1) Store256(c + cRowStride, accumulate, c10, c11);
        if (rows > 2) Store256(c + 2L * cRowStride, accumulate, c20, c21);
        if (rows > 3) Store256(c + 3L * cRowStride, accumulate, c30, c31);
        if (rows > 4) Store256(c + 4L * cRowStride, accumulate, c40, c41);
        if (rows > 5) Store256(c + 5L * cRowStride, accumulate, c50, c51);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Store256(float* c, bool accumulate, Vector256<float> v0, Vector256<float> v1)
    {
        if (accumulate)
        {
            v0 += Vector256.Load(c);
            v1 += Vector256.Load(c + 8);
        }
        v0.Store(c);
        v1.Store(c + 8);
    }
}
