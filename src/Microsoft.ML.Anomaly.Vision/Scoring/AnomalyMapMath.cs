using System.Runtime.CompilerServices;

namespace Microsoft.ML.Anomaly.Vision;

/// <summary>Per-patch scoring and map resampling used to turn nearest-neighbour distances into anomaly maps.</summary>
internal static class AnomalyMapMath
{
    /// <summary>
    /// Patch scores from the k nearest squared distances, as anomalib's CFA computes them: the distances are
    /// square-rooted, a softmin is taken over the k of every patch, and the score is the softmin weight of the
    /// nearest neighbour times the nearest distance.
    /// </summary>
    /// <param name="squaredDistances">
    /// <paramref name="patches"/> rows of <paramref name="k"/> squared distances (the nearest is the row minimum;
    /// <see cref="global::Anomaly.Vision.Training.MemoryBankScorer"/> writes them ascending). Negative values are treated as 0.
    /// </param>
    /// <param name="patches">Number of patches.</param>
    /// <param name="k">Number of distances per patch (≥ 1).</param>
    /// <param name="scores">Receives one score per patch.</param>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void SoftminNearest(ReadOnlySpan<float> squaredDistances, int patches, int k, Span<float> scores)
    {
        if (patches < 0)
            throw new ArgumentOutOfRangeException(nameof(patches), patches, "The number of patches must not be negative.");
        if (k < 1)
            throw new ArgumentOutOfRangeException(nameof(k), k, "k must be at least 1.");
        if (squaredDistances.Length < (long)patches * k)
            throw new ArgumentException(
                $"The distances hold {squaredDistances.Length} values, fewer than patches × k = {patches} × {k}.", nameof(squaredDistances));
        if (scores.Length < patches)
            throw new ArgumentException($"The destination holds {scores.Length} values, fewer than {patches} patches.", nameof(scores));

        for (int p = 0; p < patches; p++)
        {
            ReadOnlySpan<float> row = squaredDistances.Slice(p * k, k);
            float nearest = float.PositiveInfinity;
            for (int j = 0; j < k; j++)
                nearest = MathF.Min(nearest, MathF.Sqrt(MathF.Max(0f, row[j])));

            // softmin weight of the nearest: exp(-s0) / Σ exp(-s_j) = 1 / Σ exp(s0 - s_j), stable since s_j ≥ s0.
            double sum = 0;
            for (int j = 0; j < k; j++)
                sum += Math.Exp(nearest - MathF.Sqrt(MathF.Max(0f, row[j])));
            scores[p] = (float)(nearest / sum);
        }
    }

    /// <summary>
    /// Bilinear resampling of one H×W map to outH×outW with the semantics of torch's
    /// <c>F.interpolate(mode="bilinear")</c> for both <c>align_corners</c> settings.
    /// </summary>
    /// <param name="src">Source map, row-major h×w.</param>
    /// <param name="h">Source height.</param>
    /// <param name="w">Source width.</param>
    /// <param name="dst">Destination map, row-major outH×outW; must not overlap <paramref name="src"/>.</param>
    /// <param name="outH">Destination height.</param>
    /// <param name="outW">Destination width.</param>
    /// <param name="alignCorners">torch's <c>align_corners</c>.</param>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void BilinearResize(ReadOnlySpan<float> src, int h, int w, Span<float> dst, int outH, int outW, bool alignCorners)
    {
        if (h <= 0)
            throw new ArgumentOutOfRangeException(nameof(h), h, "The source height must be positive.");
        if (w <= 0)
            throw new ArgumentOutOfRangeException(nameof(w), w, "The source width must be positive.");
        if (outH <= 0)
            throw new ArgumentOutOfRangeException(nameof(outH), outH, "The destination height must be positive.");
        if (outW <= 0)
            throw new ArgumentOutOfRangeException(nameof(outW), outW, "The destination width must be positive.");
        if (src.Length < (long)h * w)
            throw new ArgumentException($"The source holds {src.Length} values, fewer than {h} × {w}.", nameof(src));
        if (dst.Length < (long)outH * outW)
            throw new ArgumentException($"The destination holds {dst.Length} values, fewer than {outH} × {outW}.", nameof(dst));

        Span<int> x0 = outW <= 1024 ? stackalloc int[outW] : new int[outW];
        Span<int> x1 = outW <= 1024 ? stackalloc int[outW] : new int[outW];
        Span<float> wx = outW <= 1024 ? stackalloc float[outW] : new float[outW];
        SourceIndices(w, outW, alignCorners, x0, x1, wx);

        float scaleY = Scale(h, outH, alignCorners);
        for (int oy = 0; oy < outH; oy++)
        {
            SourceIndex(h, oy, scaleY, alignCorners, out int y0, out int y1, out float wy);
            ReadOnlySpan<float> r0 = src.Slice(y0 * w, w);
            ReadOnlySpan<float> r1 = src.Slice(y1 * w, w);
            Span<float> o = dst.Slice(oy * outW, outW);
            float wy0 = 1f - wy;
            for (int ox = 0; ox < outW; ox++)
            {
                float l1 = wx[ox], l0 = 1f - l1;
                int a = x0[ox], b = x1[ox];
                o[ox] = wy0 * (l0 * r0[a] + l1 * r0[b]) + wy * (l0 * r1[a] + l1 * r1[b]);
            }
        }
    }

    private static void SourceIndices(int size, int outSize, bool alignCorners, Span<int> i0, Span<int> i1, Span<float> lambda)
    {
        float scale = Scale(size, outSize, alignCorners);
        for (int o = 0; o < outSize; o++)
            SourceIndex(size, o, scale, alignCorners, out i0[o], out i1[o], out lambda[o]);
    }

    /// <summary>torch's scale: (in − 1)/(out − 1) with aligned corners (0 for a single output), in/out otherwise.</summary>
    private static float Scale(int size, int outSize, bool alignCorners) =>
        alignCorners ? (outSize > 1 ? (float)(size - 1) / (outSize - 1) : 0f) : (float)size / outSize;

    private static void SourceIndex(int size, int o, float scale, bool alignCorners, out int i0, out int i1, out float lambda)
    {
        float real = alignCorners ? scale * o : MathF.Max(0f, scale * (o + 0.5f) - 0.5f);
        i0 = Math.Min((int)real, size - 1);
        i1 = i0 < size - 1 ? i0 + 1 : i0;
        lambda = MathF.Min(real - i0, 1f);
    }
}
