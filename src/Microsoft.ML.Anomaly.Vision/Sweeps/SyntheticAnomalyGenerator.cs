namespace Microsoft.ML.Anomaly.Vision;

/// <summary>What fills a synthetic defect.</summary>
public enum SyntheticAnomalyKind
{
    /// <summary>A texture foreign to the image: a second noise pattern between two random colours.</summary>
    ForeignTexture = 0,

    /// <summary>The image's own content, displaced and photometrically distorted (inverted, posterised, solarised, rescaled in brightness or with its channels swapped).</summary>
    DistortedContent = 1,
}

/// <summary>
/// Settings of <see cref="SyntheticAnomalyGenerator"/>. Defaults follow anomalib's Perlin anomaly generator (after DRAEM):
/// noise scales 2^0…2^5 per axis, rotated by up to ±90°, thresholded at 0.5, blended with a factor drawn in [0.2, 1].
/// </summary>
public sealed class SyntheticAnomalyOptions
{
    /// <summary>Smallest blend factor β (the defect's weight: pixel = (1 − β)·image + β·defect). Default 0.2.</summary>
    public float MinBlend { get; set; } = 0.2f;

    /// <summary>Largest blend factor β. Default 1.</summary>
    public float MaxBlend { get; set; } = 1f;

    /// <summary>Noise value above which a pixel belongs to the defect region. Default 0.5.</summary>
    public float NoiseThreshold { get; set; } = 0.5f;

    /// <summary>Largest exponent e of the noise's lattice cells per axis, 2^0…2^e (drawn per axis). Default 5.</summary>
    public int MaxScaleExponent { get; set; } = 5;

    /// <summary>Largest rotation of the noise pattern, in degrees either way. Default 90.</summary>
    public float MaxRotationDegrees { get; set; } = 90f;

    /// <summary>
    /// Smallest share of the image's pixels a defect changes; patterns that change fewer are drawn again. Default 0.002.
    /// </summary>
    public float MinAreaFraction { get; set; } = 0.002f;

    /// <summary>Share of defects filled with <see cref="SyntheticAnomalyKind.ForeignTexture"/>; the rest distort the image's content. Default 0.5.</summary>
    public float ForeignTextureShare { get; set; } = 0.5f;

    internal void Validate(string paramName)
    {
        if (!(MinBlend > 0 && MinBlend <= MaxBlend && MaxBlend <= 1))
            throw new ArgumentException($"The blend range needs 0 < {nameof(MinBlend)} ≤ {nameof(MaxBlend)} ≤ 1, not [{MinBlend}, {MaxBlend}].", paramName);
        if (!(NoiseThreshold > -1 && NoiseThreshold < 1))
            throw new ArgumentException($"{nameof(NoiseThreshold)} must be between -1 and 1, not {NoiseThreshold}.", paramName);
        if (MaxScaleExponent is < 0 or > 10)
            throw new ArgumentException($"{nameof(MaxScaleExponent)} must be between 0 and 10, not {MaxScaleExponent}.", paramName);
        if (!(MaxRotationDegrees >= 0 && MaxRotationDegrees <= 180))
            throw new ArgumentException($"{nameof(MaxRotationDegrees)} must be between 0 and 180, not {MaxRotationDegrees}.", paramName);
        if (!(MinAreaFraction > 0 && MinAreaFraction < 0.5f))
            throw new ArgumentException($"{nameof(MinAreaFraction)} must be above 0 and below 0.5, not {MinAreaFraction}.", paramName);
        if (!(ForeignTextureShare >= 0 && ForeignTextureShare <= 1))
            throw new ArgumentException($"{nameof(ForeignTextureShare)} must be between 0 and 1, not {ForeignTextureShare}.", paramName);
    }
}

/// <summary>An image with a synthetic defect and its mask.</summary>
public sealed class SyntheticAnomaly
{
    internal SyntheticAnomaly(byte[] rgb, byte[] mask, int height, int width, SyntheticAnomalyKind kind, float blend)
    {
        Rgb = rgb;
        Mask = mask;
        Height = height;
        Width = width;
        Kind = kind;
        Blend = blend;
    }

    /// <summary>The defective image: row-major RGB bytes.</summary>
    public byte[] Rgb { get; }

    /// <summary>The defect's mask: one byte per pixel, 255 exactly where <see cref="Rgb"/> differs from the input image, else 0.</summary>
    public byte[] Mask { get; }

    /// <summary>Image height.</summary>
    public int Height { get; }

    /// <summary>Image width.</summary>
    public int Width { get; }

    /// <summary>What fills the defect.</summary>
    public SyntheticAnomalyKind Kind { get; }

    /// <summary>The blend factor β used.</summary>
    public float Blend { get; }
}

/// <summary>
/// Turns a good image into a defective one with an exact mask, as anomalib's synthetic validation split does after DRAEM:
/// a Perlin-noise pattern, rotated and thresholded, outlines the defect region, which is blended with a foreign texture or
/// with distorted content of the image. The same image, seed and options give the same bytes on every machine.
/// </summary>
/// <remarks>
/// Differences from anomalib, on purpose: there is no external texture data set (anomalib draws DTD images when given a
/// path, else the noise itself), so the foreign texture is a second noise pattern between two random colours; the
/// distortions are a fixed list of photometric operations on displaced image content rather than torchvision's random
/// augmentations; the mask keeps only pixels whose bytes actually changed (a region pixel that rounds back to its old
/// value is not a defect), and a pattern that changes too few pixels is drawn again, so every defective image has a defect.
/// Only integer-exact arithmetic and <c>DeterministicMath</c>'s polynomial sine make the output byte-identical.
/// </remarks>
public static class SyntheticAnomalyGenerator
{
    private const int MaxAttempts = 64;

    /// <summary>Adds one synthetic defect to <paramref name="rgb"/>.</summary>
    /// <param name="rgb">The good image: row-major RGB bytes, <paramref name="height"/> × <paramref name="width"/> × 3.</param>
    /// <param name="height">Image height (at least 8).</param>
    /// <param name="width">Image width (at least 8).</param>
    /// <param name="seed">Seed of this image's defect.</param>
    /// <param name="options">Settings; null for the defaults.</param>
    /// <returns>The defective image and its mask.</returns>
    /// <exception cref="ArgumentException">Wrong sizes or options.</exception>
    /// <exception cref="InvalidOperationException">No pattern changed enough pixels (e.g. a tiny or constant image).</exception>
    public static SyntheticAnomaly Apply(ReadOnlySpan<byte> rgb, int height, int width, int seed, SyntheticAnomalyOptions? options = null)
    {
        options ??= new SyntheticAnomalyOptions();
        options.Validate(nameof(options));
        ArgumentOutOfRangeException.ThrowIfLessThan(height, 8);
        ArgumentOutOfRangeException.ThrowIfLessThan(width, 8);
        if (rgb.Length != height * width * 3)
            throw new ArgumentException($"The image has {rgb.Length} bytes, expected {height}×{width}×3 = {height * width * 3}.", nameof(rgb));

        var random = new DeterministicRandom(DeterministicRandom.Combine(DeterministicRandom.HashString("synthetic-anomaly"), (ulong)(uint)seed));
        int pixels = height * width;
        long minimum = Math.Max(1, (long)Math.Ceiling(options.MinAreaFraction * (double)pixels));
        var output = new byte[rgb.Length];
        var mask = new byte[pixels];
        var region = new bool[pixels];
        var defect = new byte[rgb.Length];
        for (int attempt = 0; attempt < MaxAttempts; attempt++)
        {
            DrawRegion(region, height, width, options, ref random);
            var kind = random.NextDouble() < options.ForeignTextureShare ? SyntheticAnomalyKind.ForeignTexture : SyntheticAnomalyKind.DistortedContent;
            if (kind == SyntheticAnomalyKind.ForeignTexture)
                DrawForeignTexture(defect, height, width, options, ref random);
            else
                DrawDistortedContent(rgb, defect, height, width, ref random);
            double blend = random.Uniform(options.MinBlend, options.MaxBlend);
            if (options.MaxBlend == options.MinBlend)
                blend = options.MaxBlend;

            long changed = 0;
            for (int i = 0; i < pixels; i++)
            {
                bool differs = false;
                for (int c = 0; c < 3; c++)
                {
                    int k = (i * 3) + c;
                    byte value = rgb[k];
                    if (region[i])
                        value = (byte)Math.Round(((1 - blend) * rgb[k]) + (blend * defect[k]), MidpointRounding.AwayFromZero);
                    output[k] = value;
                    differs |= value != rgb[k];
                }
                mask[i] = differs ? (byte)255 : (byte)0;
                changed += differs ? 1 : 0;
            }
            if (changed >= minimum)
                return new SyntheticAnomaly(output, mask, height, width, kind, (float)blend);
        }
        throw new InvalidOperationException(
            $"No synthetic defect changed at least {minimum} pixels of the {height}×{width} image in {MaxAttempts} attempts; the image may be too small or too uniform.");
    }

    /// <summary>The defect region: rotated Perlin noise above the threshold.</summary>
    private static void DrawRegion(bool[] region, int height, int width, SyntheticAnomalyOptions options, ref DeterministicRandom random)
    {
        var noise = PerlinNoise.Create(height, width, 1 << random.NextInt(options.MaxScaleExponent + 1), 1 << random.NextInt(options.MaxScaleExponent + 1), ref random);
        double angle = random.Uniform(-options.MaxRotationDegrees, options.MaxRotationDegrees) * Math.PI / 180;
        double cos = DeterministicMath.Cos(angle), sin = DeterministicMath.Sin(angle);
        double cy = (height - 1) / 2.0, cx = (width - 1) / 2.0;
        for (int y = 0; y < height; y++)
        {
            for (int x = 0; x < width; x++)
            {
                // The noise image rotated about its centre; outside the unrotated image the value is 0 (anomalib fills with 0).
                double sy = cy + ((y - cy) * cos) - ((x - cx) * sin);
                double sx = cx + ((y - cy) * sin) + ((x - cx) * cos);
                double value = sy < 0 || sx < 0 || sy > height - 1 || sx > width - 1 ? 0 : noise.At(sy, sx);
                region[(y * width) + x] = value > options.NoiseThreshold;
            }
        }
    }

    private static void DrawForeignTexture(byte[] defect, int height, int width, SyntheticAnomalyOptions options, ref DeterministicRandom random)
    {
        var noise = PerlinNoise.Create(height, width, 1 << (1 + random.NextInt(5)), 1 << (1 + random.NextInt(5)), ref random);
        Span<double> a = stackalloc double[3], b = stackalloc double[3];
        for (int c = 0; c < 3; c++)
        {
            a[c] = random.NextInt(256);
            b[c] = random.NextInt(256);
        }
        for (int y = 0; y < height; y++)
        {
            for (int x = 0; x < width; x++)
            {
                double t = Math.Clamp((noise.At(y, x) * 0.5) + 0.5, 0, 1);
                int k = ((y * width) + x) * 3;
                for (int c = 0; c < 3; c++)
                    defect[k + c] = (byte)Math.Round(a[c] + ((b[c] - a[c]) * t), MidpointRounding.AwayFromZero);
            }
        }
    }

    /// <summary>The image's content shifted by up to a quarter of its size, then two distinct photometric distortions.</summary>
    private static void DrawDistortedContent(ReadOnlySpan<byte> rgb, byte[] defect, int height, int width, ref DeterministicRandom random)
    {
        int dy = random.NextInt((height / 2) + 1) - (height / 4), dx = random.NextInt((width / 2) + 1) - (width / 4);
        for (int y = 0; y < height; y++)
        {
            int sy = Math.Clamp(y + dy, 0, height - 1);
            for (int x = 0; x < width; x++)
            {
                int sx = Math.Clamp(x + dx, 0, width - 1);
                int s = ((sy * width) + sx) * 3, k = ((y * width) + x) * 3;
                defect[k] = rgb[s];
                defect[k + 1] = rgb[s + 1];
                defect[k + 2] = rgb[s + 2];
            }
        }
        const int operations = 5;
        int first = random.NextInt(operations);
        int second = (first + 1 + random.NextInt(operations - 1)) % operations;
        foreach (int operation in new[] { first, second })
        {
            int threshold = 32 + random.NextInt(97);
            double gain = random.NextDouble() < 0.5 ? random.Uniform(0.3, 0.7) : random.Uniform(1.4, 2.0);
            int rotate = 1 + random.NextInt(2);
            for (int i = 0; i < defect.Length; i += 3)
            {
                for (int c = 0; c < 3; c++)
                {
                    int v = defect[i + c];
                    defect[i + c] = operation switch
                    {
                        0 => (byte)(255 - v),                                       // invert
                        1 => (byte)(v & 0xE0),                                      // posterise to 3 bits
                        2 => (byte)(v >= threshold ? 255 - v : v),                  // solarise
                        3 => (byte)Math.Clamp((int)Math.Round(v * gain), 0, 255),   // brightness
                        _ => defect[i + c],
                    };
                }
                if (operation == 4)
                {
                    // Channel rotation (a hue change): RGB -> GBR or BRG.
                    byte r = defect[i], g = defect[i + 1], b = defect[i + 2];
                    (defect[i], defect[i + 1], defect[i + 2]) = rotate == 1 ? (g, b, r) : (b, r, g);
                }
            }
        }
    }
}

/// <summary>
/// Two-dimensional gradient (Perlin) noise over an image, as anomalib's <c>generate_perlin_noise</c> defines it: random unit
/// gradients on a lattice of scaleY × scaleX cells spanning the image padded to powers of two, quintic fade, scaled by √2.
/// Evaluated at any real position, so the rotated pattern needs no resampling.
/// </summary>
internal sealed class PerlinNoise
{
    private readonly double[] _gradientY;
    private readonly double[] _gradientX;
    private readonly int _columns;
    private readonly double _cellsPerPixelY;
    private readonly double _cellsPerPixelX;

    private PerlinNoise(double[] gradientY, double[] gradientX, int columns, double cellsPerPixelY, double cellsPerPixelX)
    {
        _gradientY = gradientY;
        _gradientX = gradientX;
        _columns = columns;
        _cellsPerPixelY = cellsPerPixelY;
        _cellsPerPixelX = cellsPerPixelX;
    }

    public static PerlinNoise Create(int height, int width, int scaleY, int scaleX, ref DeterministicRandom random)
    {
        int rows = scaleY + 1, columns = scaleX + 1;
        var gy = new double[rows * columns];
        var gx = new double[rows * columns];
        for (int i = 0; i < gy.Length; i++)
        {
            double angle = 2 * Math.PI * random.NextDouble();
            gy[i] = DeterministicMath.Cos(angle);
            gx[i] = DeterministicMath.Sin(angle);
        }
        return new PerlinNoise(gy, gx, columns, (double)scaleY / NextPowerOfTwo(height), (double)scaleX / NextPowerOfTwo(width));
    }

    /// <summary>The noise at pixel position (y, x), roughly in [-1, 1].</summary>
    public double At(double y, double x)
    {
        double u = y * _cellsPerPixelY, v = x * _cellsPerPixelX;
        int i = (int)Math.Floor(u), j = (int)Math.Floor(v);
        double fu = u - i, fv = v - j;
        int g00 = (i * _columns) + j, g10 = g00 + _columns;
        double n00 = (_gradientY[g00] * fu) + (_gradientX[g00] * fv);
        double n10 = (_gradientY[g10] * (fu - 1)) + (_gradientX[g10] * fv);
        double n01 = (_gradientY[g00 + 1] * fu) + (_gradientX[g00 + 1] * (fv - 1));
        double n11 = (_gradientY[g10 + 1] * (fu - 1)) + (_gradientX[g10 + 1] * (fv - 1));
        double tu = Fade(fu), tv = Fade(fv);
        double top = n00 + ((n10 - n00) * tu), bottom = n01 + ((n11 - n01) * tu);
        return Math.Sqrt(2) * (top + ((bottom - top) * tv));
    }

    private static double Fade(double t) => t * t * t * ((t * ((t * 6) - 15)) + 10);

    private static int NextPowerOfTwo(int value) => (int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)value);
}
