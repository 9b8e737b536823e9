using System.Runtime.Intrinsics;

namespace Anomaly.Vision.Training;

/// <summary>
/// fp32 matrix products C = A·B (or C += A·B) for CFA's descriptor on the CPU, on <see cref="MemoryBankScorer"/>'s
/// register-tile kernels.
/// </summary>
/// <remarks>
/// LibTorch's CPU GEMM (MKL) runs at a small fraction of this machine's rate on AMD processors
/// (<c>dotnet run -c Release --project bench -- cfa-train</c> prints both), and CFA's descriptor is two GEMMs per
/// training image (forward and weight gradient). B is packed once into panels <c>[N/W][K][W]</c> (W = 64 with 512-bit
/// vectors, 16 with 256-bit ones), each group of 6 rows of A into <c>[K][6]</c>; the kernel accumulates a 6 × W tile
/// over all of K in registers. A work item packs up to 32 row groups, then runs every panel of B over all of them,
/// so each panel is fetched into the inner caches once per item rather than once per row group. Operands are read
/// through row and column strides, so a transposed operand costs nothing beyond its packing. Work items run in
/// parallel; every element of C is one dot product in channel order, so results do not depend on the thread count.
/// </remarks>
internal static class PackedGemm
{
    private const int Rows = MemoryBankScorer.Rows;

    /// <summary>Most row groups per parallel work item (fewer when that would leave threads without work).</summary>
    private const int MaxGroupsPerItem = 32;

    /// <summary>C[m × n] (row-major) = A·B, or C += A·B when <paramref name="accumulate"/>.</summary>
    /// <param name="m">Rows of A and C.</param>
    /// <param name="n">Columns of B and C.</param>
    /// <param name="k">Columns of A, rows of B.</param>
    /// <param name="a">A: element (i, j) at <c>i·aRowStride + j·aColumnStride</c>.</param>
    /// <param name="aRowStride">Stride between rows of A.</param>
    /// <param name="aColumnStride">Stride between columns of A.</param>
    /// <param name="b">B: element (j, l) at <c>j·bRowStride + l·bColumnStride</c>.</param>
    /// <param name="bRowStride">Stride between rows of B.</param>
    /// <param name="bColumnStride">Stride between columns of B.</param>
    /// <param name="c">C, m rows of n values.</param>
    /// <param name="accumulate">Add to C rather than overwrite it.</param>
    /// <param name="useVector512">The 512-bit kernel (default: when the hardware accelerates it) or the 256-bit one.</param>
    public static unsafe void Multiply(int m, int n, int k, ReadOnlySpan<float> a, int aRowStride, int aColumnStride,
        ReadOnlySpan<float> b, int bRowStride, int bColumnStride, Span<float> c, bool accumulate, bool? useVector512 = null)
    {
        if (m <= 0 || n <= 0 || k <= 0)
            throw new ArgumentOutOfRangeException(nameof(m), $"The shapes must be positive (m {m}, n {n}, k {k}).");
        if ((long)(m - 1) * aRowStride + (long)(k - 1) * aColumnStride >= a.Length)
            throw new ArgumentException($"A holds {a.Length} values, too few for {m} × {k} with strides {aRowStride}, {aColumnStride}.", nameof(a));
        if ((long)(k - 1) * bRowStride + (long)(n - 1) * bColumnStride >= b.Length)
            throw new ArgumentException($"B holds {b.Length} values, too few for {k} × {n} with strides {bRowStride}, {bColumnStride}.", nameof(b));
        if (c.Length < (long)m * n)
            throw new ArgumentException($"C holds {c.Length} values, fewer than {m} × {n}.", nameof(c));

        bool wide = useVector512 ?? Vector512.IsHardwareAccelerated;
        int width = wide ? 64 : 16;
        int panels = (n + width - 1) / width;
        long packedLength = (long)panels * k * width;
        if (packedLength + 16 > Array.MaxLength)
            throw new ArgumentException("B is too large to pack.", nameof(b));
        var packedB = GC.AllocateUninitializedArray<float>((int)packedLength + 16, pinned: true);
        int groups = (m + Rows - 1) / Rows;
        int threads = Environment.ProcessorCount;
        int groupsPerItem = Math.Clamp(groups / (4 * threads), 1, MaxGroupsPerItem);
        int items = (groups + groupsPerItem - 1) / groupsPerItem;

        fixed (float* aBase = a)
        fixed (float* bBase = b)
        fixed (float* cBase = c)
        fixed (float* packedBase = packedB)
        {
            float* pb = Align(packedBase);
            PackB(bBase, k, n, bRowStride, bColumnStride, width, panels, pb);
            nint ap = (nint)aBase, bp = (nint)pb, cp = (nint)cBase;
            Parallel.For(
                0,
                items,
                new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount },
                () => (GC.AllocateUninitializedArray<float>(groupsPerItem * k * Rows, pinned: true), GC.AllocateUninitializedArray<float>(Rows * width + 16, pinned: true)),
                (item, _, scratch) =>
                {
                    fixed (float* packedA = scratch.Item1)
                    fixed (float* tileBase = scratch.Item2)
                    {
                        float* tile = Align(tileBase);
                        int firstGroup = item * groupsPerItem, endGroup = Math.Min(groups, firstGroup + groupsPerItem);
                        for (int g = firstGroup; g < endGroup; g++)
                            PackA((float*)ap + (long)g * Rows * aRowStride, Math.Min(Rows, m - g * Rows), k, aRowStride, aColumnStride, packedA + (long)(g - firstGroup) * k * Rows);
                        for (int p = 0; p < panels; p++)
                        {
                            float* panel = (float*)bp + (long)p * k * width;
                            int columns = Math.Min(width, n - p * width);
                            for (int g = firstGroup; g < endGroup; g++)
                            {
                                float* a = packedA + (long)(g - firstGroup) * k * Rows;
                                if (wide)
                                    MemoryBankScorer.Kernel512(a, panel, k, null, tile, first: true, last: false);
                                else
                                    MemoryBankScorer.Kernel256(a, panel, k, null, tile, first: true, last: false);
                                int rows = Math.Min(Rows, m - g * Rows);
                                for (int r = 0; r < rows; r++)
                                {
                                    var source = new ReadOnlySpan<float>(tile + r * width, columns);
                                    var destination = new Span<float>((float*)cp + (long)(g * Rows + r) * n + p * width, columns);
                                    if (accumulate)
                                        System.Numerics.Tensors.TensorPrimitives.Add(destination, source, destination);
                                    else
                                        source.CopyTo(destination);
                                }
                            }
                        }
                    }
                    return scratch;
                },
                _ => { });
        }
    }

    /// <summary>Packs B [k × n] into panels [panels][k][width], zero columns padding the last panel.</summary>
    private static unsafe void PackB(float* b, int k, int n, int rowStride, int columnStride, int width, int panels, float* packed)
    {
        for (int p = 0; p < panels; p++)
        {
            int columns = Math.Min(width, n - p * width);
            float* panel = packed + (long)p * k * width;
            for (int j = 0; j < k; j++)
            {
                float* dst = panel + (long)j * width;
                float* src = b + (long)j * rowStride + (long)p * width * columnStride;
                for (int l = 0; l < columns; l++)
                    dst[l] = src[(long)l * columnStride];
                for (int l = columns; l < width; l++)
                    dst[l] = 0f;
            }
        }
    }

    /// <summary>Packs up to 6 rows of A (k columns) as [k][6], zero rows padding a short group.</summary>
    private static unsafe void PackA(float* a, int rows, int k, int rowStride, int columnStride, float* packed)
    {
        for (int j = 0; j < k; j++)
        {
            float* src = a + (long)j * columnStride;
            float* dst = packed + j * Rows;
            for (int r = 0; r < Rows; r++)
                dst[r] = r < rows ? src[(long)r * rowStride] : 0f;
        }
    }

    private static unsafe float* Align(float* p) => (float*)(((nuint)p + 63) & ~(nuint)63);
}
