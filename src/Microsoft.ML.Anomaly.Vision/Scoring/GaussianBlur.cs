using System.Runtime.CompilerServices;
using System.Numerics;

namespace Microsoft.ML.Anomaly.Vision;

/// <summary>
/// Gaussian smoothing of a single-channel map as anomalib's GaussianBlur2d does it: an odd kernel of size
/// 2·⌊4σ + 0.5⌋ + 1, Gaussian weights normalised to sum 1, reflect padding (the border pixel is not repeated)
/// and an output of the input size. Implemented as two separable 1-D passes.
/// </summary>
internal sealed class GaussianBlur
{
    private readonly float[] _kernel;

    /// <summary>Creates the blur for standard deviation <paramref name="sigma"/>.</summary>
    /// <param name="sigma">Standard deviation in pixels (positive).</param>
    public GaussianBlur(float sigma = 4f)
    {
        if (!(sigma > 0f) || float.IsInfinity(sigma))
            throw new ArgumentOutOfRangeException(nameof(sigma), sigma, "sigma must be a positive finite number.");
        Sigma = sigma;
        KernelSize = 2 * (int)(4.0 * sigma + 0.5) + 1;
        int radius = KernelSize / 2;
        var weights = new double[KernelSize];
        double sum = 0;
        for (int i = 0; i < KernelSize; i++)
        {
            double x = i - radius;
            weights[i] = Math.Exp(-(x * x) / (2.0 * sigma * sigma));
            sum += weights[i];
        }
        _kernel = new float[KernelSize];
        for (int i = 0; i < KernelSize; i++)
            _kernel[i] = (float)(weights[i] / sum);
    }

    /// <summary>Standard deviation in pixels.</summary>
    public float Sigma { get; }

    /// <summary>Kernel size (odd): 2·⌊4σ + 0.5⌋ + 1, 33 for σ = 4.</summary>
    public int KernelSize { get; }

    /// <summary>The normalised 1-D kernel; the 2-D kernel is its outer product with itself.</summary>
    public ReadOnlySpan<float> Kernel => _kernel;

    /// <summary>
    /// Blurs an h×w map. Borders are reflected without repeating the edge pixel; for maps narrower than the
    /// kernel radius the reflection repeats. <paramref name="dst"/> may be the same memory as <paramref name="src"/>.
    /// </summary>
    /// <param name="src">Source map, row-major h×w.</param>
    /// <param name="h">Height.</param>
    /// <param name="w">Width.</param>
    /// <param name="dst">Receives the blurred h×w map.</param>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Apply(ReadOnlySpan<float> src, int h, int w, Span<float> dst)
    {
        if (h <= 0)
            throw new ArgumentOutOfRangeException(nameof(h), h, "The height must be positive.");
        if (w <= 0)
            throw new ArgumentOutOfRangeException(nameof(w), w, "The width must be positive.");
        if (src.Length < (long)h * w)
            throw new ArgumentException($"The source holds {src.Length} values, fewer than {h} × {w}.", nameof(src));
        if (dst.Length < (long)h * w)
            throw new ArgumentException($"The destination holds {dst.Length} values, fewer than {h} × {w}.", nameof(dst));

        int radius = KernelSize / 2;
        ReadOnlySpan<float> kernel = _kernel;
        float[] temp = new float[h * w];
        float[] padded = new float[w + 2 * radius];

        // Horizontal pass: each row reflected into a padded buffer, then a vectorised 1-D correlation.
        for (int y = 0; y < h; y++)
        {
            ReadOnlySpan<float> row = src.Slice(y * w, w);
            for (int i = 0; i < padded.Length; i++)
                padded[i] = row[Reflect(i - radius, w)];
            Span<float> o = temp.AsSpan(y * w, w);
            o.Clear();
            for (int t = 0; t < kernel.Length; t++)
                MultiplyAdd(padded.AsSpan(t, w), kernel[t], o);
        }

        // Vertical pass: output row y is the kernel-weighted sum of reflected rows of the horizontal result.
        var acc = new float[w];
        for (int y = 0; y < h; y++)
        {
            Array.Clear(acc);
            for (int t = 0; t < kernel.Length; t++)
                MultiplyAdd(temp.AsSpan(Reflect(y - radius + t, h) * w, w), kernel[t], acc);
            acc.AsSpan().CopyTo(dst.Slice(y * w, w));
        }
    }

    /// <summary>Reflect (mirror without repeating the edge) index into [0, n).</summary>
    internal static int Reflect(int i, int n)
    {
        if (n == 1)
            return 0;
        int period = 2 * (n - 1);
        i %= period;
        if (i < 0)
            i += period;
        return i < n ? i : period - i;
    }

    private static void MultiplyAdd(ReadOnlySpan<float> x, float weight, Span<float> acc)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated && x.Length >= Vector<float>.Count)
        {
            var wv = new Vector<float>(weight);
            for (; i <= x.Length - Vector<float>.Count; i += Vector<float>.Count)
            {
                var a = new Vector<float>(acc.Slice(i));
                (a + new Vector<float>(x.Slice(i)) * wv).CopyTo(acc.Slice(i));
            }
        }
        for (; i < x.Length; i++)
            acc[i] += x[i] * weight;
    }
}
