namespace Microsoft.ML.Anomaly.Vision;

/// <summary>One rendered image: RGB bytes (row-major) and, for a defect image, its 0/255 mask.</summary>
internal sealed class SyntheticSample
{
    public SyntheticSample(int size, byte[] rgb, byte[]? mask)
    {
        Size = size;
        Rgb = rgb;
        Mask = mask;
    }

    /// <summary>Width and height in pixels.</summary>
    public int Size { get; }

    /// <summary>Size × Size × 3 bytes, row-major RGB.</summary>
    public byte[] Rgb { get; }

    /// <summary>Size × Size bytes, 255 where the defect changed the pixel and 0 elsewhere; null for a defect-free rendering.</summary>
    public byte[]? Mask { get; }
}

/// <summary>
/// Renders the images of <see cref="SyntheticDefectSet"/>. Every image is a function of (seed, category, split,
/// defect type, index) alone; the defect is drawn from its own random stream on top of the defect-free rendering,
/// so <see cref="Render"/> with <c>withDefect: false</c> gives exactly the image the defect was painted on.
/// </summary>
internal static class SyntheticRenderer
{
    /// <summary>Fewest pixels a defect may cover; smaller draws are redrawn.</summary>
    private const int MinDefectPixels = 4;

    private static readonly double[][] s_contaminationColours =
    {
        new double[] { 170, 72, 34 },
        new double[] { 62, 150, 70 },
        new double[] { 60, 92, 190 },
        new double[] { 122, 50, 140 },
        new double[] { 212, 190, 52 },
    };

    /// <summary>Renders one image.</summary>
    /// <param name="category">A name from <see cref="SyntheticDefectSet.CategoryNames"/>.</param>
    /// <param name="seed">The data set seed.</param>
    /// <param name="size">Width and height in pixels.</param>
    /// <param name="split">Train or test.</param>
    /// <param name="defectType"><c>"good"</c> or a name from <see cref="SyntheticDefectSet.DefectTypes"/>.</param>
    /// <param name="index">The image's number within its folder.</param>
    /// <param name="withDefect">False renders the defect-free image a defect image is painted on.</param>
    public static SyntheticSample Render(string category, int seed, int size, MvtecSplit split, string defectType, int index, bool withDefect)
    {
        ulong sampleSeed = DeterministicRandom.HashString("anomaly-vision-synthetic-defects");
        sampleSeed = DeterministicRandom.Combine(sampleSeed, (ulong)(uint)seed);
        sampleSeed = DeterministicRandom.Combine(sampleSeed, DeterministicRandom.HashString(category));
        sampleSeed = DeterministicRandom.Combine(sampleSeed, split == MvtecSplit.Train ? 1UL : 2UL);
        sampleSeed = DeterministicRandom.Combine(sampleSeed, DeterministicRandom.HashString(defectType));
        sampleSeed = DeterministicRandom.Combine(sampleSeed, (ulong)(uint)index);

        Scene scene = category switch
        {
            SyntheticDefectSet.Weave => RenderWeave(size, sampleSeed),
            SyntheticDefectSet.Washer => RenderWasher(size, sampleSeed),
            _ => throw new ArgumentException($"Unknown synthetic category '{category}'.", nameof(category)),
        };

        byte[] rgb = scene.Rgb;
        if (!withDefect || defectType == MvtecAd.GoodType)
        {
            return new SyntheticSample(size, rgb, null);
        }

        var rng = new DeterministicRandom(DeterministicRandom.Combine(sampleSeed, 0xDEFEC7UL));
        byte[] mask = PaintDefect(scene, rgb, defectType, ref rng);
        return new SyntheticSample(size, rgb, mask);
    }

    private static byte Quantize(double v) => (byte)Math.Clamp((int)Math.Floor(v + 0.5), 0, 255);

    private static double Clamp01(double v) => v < 0 ? 0 : v > 1 ? 1 : v;

    /// <summary>A rounded thread cross-section: 0 at f = 0 and f = 1, 1 at f = 0.5 (a smoothed parabola).</summary>
    private static double Bump(double f)
    {
        double p = 4 * f * (1 - f);
        return p * (2 - p);
    }

    private static double Lerp(double a, double b, double t) => a + ((b - a) * t);

    /// <summary>A defect-free rendering and what defects need to know about it.</summary>
    private sealed class Scene
    {
        public Scene(int size, byte[] rgb, Washer? washer)
        {
            Size = size;
            Rgb = rgb;
            Object = washer;
        }

        public int Size { get; }

        /// <summary>Size × Size × 3 bytes, the defect-free image.</summary>
        public byte[] Rgb { get; }

        /// <summary>The object's geometry and background; null for textures.</summary>
        public Washer? Object { get; }

        /// <summary>True where a surface defect may lie: on textures everywhere, on objects only where the object fully covers the pixel.</summary>
        public bool OnSurface(int x, int y) => Object is null || Object.Coverage(x, y) >= 1.0;

        /// <summary>Draws a point on the surface for a defect to start from.</summary>
        public (double X, double Y) PickPoint(ref DeterministicRandom rng)
        {
            if (Object is not { } w)
            {
                return (rng.Uniform(0.1, 0.9) * Size, rng.Uniform(0.1, 0.9) * Size);
            }

            double angle = rng.Uniform(0, 2 * Math.PI);
            double band = w.OuterRadius - w.InnerRadius;
            double radius = rng.Uniform(w.InnerRadius + (0.15 * band), w.OuterRadius - (0.15 * band));
            return (w.CentreX + (radius * DeterministicMath.Cos(angle)), w.CentreY + (radius * DeterministicMath.Sin(angle)));
        }
    }

    /// <summary>A plain-woven fabric: alternating warp and weft threads, slightly rotated, with uneven lighting and grain.</summary>
    private static Scene RenderWeave(int size, ulong seed)
    {
        var rng = new DeterministicRandom(seed);
        double threadWidth = Math.Max(2.0, size / 32.0) * rng.Uniform(0.92, 1.08);
        double angle = rng.Uniform(-0.05, 0.05);
        double ca = DeterministicMath.Cos(angle);
        double sa = DeterministicMath.Sin(angle);
        double offsetU = rng.Uniform(0, 2) + 64;
        double offsetV = rng.Uniform(0, 2) + 64;
        double brightness = rng.Uniform(0.95, 1.05);
        double[] warp = { 196 * brightness, 176 * brightness, 140 * brightness };
        double[] weft = { 174 * brightness, 154 * brightness, 120 * brightness };
        ulong warpSeed = rng.NextUInt64();
        ulong weftSeed = rng.NextUInt64();
        var light = new ValueNoise(size, size / 3.0, rng.NextUInt64());
        ulong grainSeed = rng.NextUInt64();

        var rgb = new byte[size * size * 3];
        for (int y = 0; y < size; y++)
        {
            for (int x = 0; x < size; x++)
            {
                double u = (((ca * x) + (sa * y)) / threadWidth) + offsetU;
                double v = (((ca * y) - (sa * x)) / threadWidth) + offsetV;
                double fi = Math.Floor(u);
                double fj = Math.Floor(v);
                int i = (int)fi;
                int j = (int)fj;
                double fu = u - fi;
                double fv = v - fj;
                bool warpOnTop = ((i + j) & 1) == 0;
                double across = warpOnTop ? fu : fv;
                double along = warpOnTop ? fv : fu;
                double[] thread = warpOnTop ? warp : weft;
                double variation = warpOnTop ? DeterministicRandom.Hash01(i, 0, warpSeed) : DeterministicRandom.Hash01(0, j, weftSeed);
                double shade = (0.45 + (0.55 * Bump(across) * (0.75 + (0.25 * Bump(along))))) * (0.95 + (0.1 * variation))
                    * (0.92 + (0.16 * light.At(x, y)));
                double grain = (DeterministicRandom.Hash01(x, y, grainSeed) - 0.5) * 8;
                int p = ((y * size) + x) * 3;
                rgb[p] = Quantize((thread[0] * shade) + grain);
                rgb[p + 1] = Quantize((thread[1] * shade) + grain);
                rgb[p + 2] = Quantize((thread[2] * shade) + grain);
            }
        }

        return new Scene(size, rgb, null);
    }

    /// <summary>The washer's pose, lighting and background: everything needed to render any of its pixels.</summary>
    private sealed class Washer
    {
        private readonly double _lightX;
        private readonly double _lightY;
        private readonly double _metal;
        private readonly double[] _background;
        private readonly ValueNoise _backgroundNoise;
        private readonly ulong _backgroundGrainSeed;
        private readonly ulong _grainSeed;
        private readonly double _ringFrequency;

        public Washer(int size, ref DeterministicRandom rng)
        {
            CentreX = (size / 2.0) + (rng.Uniform(-0.002, 0.002) * size);
            CentreY = (size / 2.0) + (rng.Uniform(-0.002, 0.002) * size);
            OuterRadius = 0.36 * size * rng.Uniform(0.998, 1.002);
            InnerRadius = 0.16 * size * rng.Uniform(0.998, 1.002);
            double lightAngle = 3.927 + rng.Uniform(-0.1, 0.1);
            _lightX = DeterministicMath.Cos(lightAngle);
            _lightY = DeterministicMath.Sin(lightAngle);
            _metal = 150 * rng.Uniform(0.98, 1.02);
            double level = rng.Uniform(0.96, 1.04);
            _background = new[] { 46 * level, 50 * level, 56 * level };
            _backgroundNoise = new ValueNoise(size, size / 5.0, rng.NextUInt64());
            _backgroundGrainSeed = rng.NextUInt64();
            _grainSeed = rng.NextUInt64();
            _ringFrequency = 2.1 * 256.0 / size;
        }

        public double CentreX { get; }

        public double CentreY { get; }

        public double OuterRadius { get; }

        public double InnerRadius { get; }

        /// <summary>How much of pixel (x, y) the ring covers, 0 to 1 (a one-pixel ramp at both rims).</summary>
        public double Coverage(int x, int y)
        {
            double dx = x + 0.5 - CentreX;
            double dy = y + 0.5 - CentreY;
            double d = Math.Sqrt((dx * dx) + (dy * dy));
            return Clamp01(OuterRadius - d + 0.5) * Clamp01(d - InnerRadius + 0.5);
        }

        /// <summary>The background colour at pixel (x, y), whether or not the ring hides it.</summary>
        public void Background(int x, int y, Span<double> colour)
        {
            double shade = 0.9 + (0.2 * _backgroundNoise.At(x, y));
            double grain = (DeterministicRandom.Hash01(x, y, _backgroundGrainSeed) - 0.5) * 6;
            for (int c = 0; c < 3; c++)
            {
                colour[c] = (_background[c] * shade) + grain;
            }
        }

        /// <summary>The defect-free colour at pixel (x, y): bevelled metal with concentric machining marks, blended into the background at the rims.</summary>
        public void Render(int x, int y, Span<double> colour)
        {
            Background(x, y, colour);
            double dx = x + 0.5 - CentreX;
            double dy = y + 0.5 - CentreY;
            double d = Math.Sqrt((dx * dx) + (dy * dy));
            double cov = Clamp01(OuterRadius - d + 0.5) * Clamp01(d - InnerRadius + 0.5);
            if (cov <= 0)
            {
                return;
            }

            // Radial tilt of the bevel: -1 (facing the hole) at the inner rim to +1 (facing out) at the outer rim.
            double s = (2 * Clamp01((d - InnerRadius) / (OuterRadius - InnerRadius))) - 1;
            double tilt = s * (1.5 - (0.5 * s * s));
            double shade = 1 + (0.35 * tilt * ((dx * _lightX) + (dy * _lightY)) / d);
            double rings = 1 + (0.025 * DeterministicMath.Sin(d * _ringFrequency));
            double grain = (DeterministicRandom.Hash01(x, y, _grainSeed) - 0.5) * 8;
            double metal = (_metal * shade * rings) + grain;
            colour[0] = (colour[0] * (1 - cov)) + (metal * cov);
            colour[1] = (colour[1] * (1 - cov)) + (metal * cov);
            colour[2] = (colour[2] * (1 - cov)) + (((_metal * 1.03 * shade * rings) + grain) * cov);
        }
    }

    /// <summary>A fixtured metal washer (bevelled ring with concentric machining marks) on a dark background, with slight lighting and finish jitter.</summary>
    private static Scene RenderWasher(int size, ulong seed)
    {
        var rng = new DeterministicRandom(seed);
        var washer = new Washer(size, ref rng);
        var rgb = new byte[size * size * 3];
        Span<double> colour = stackalloc double[3];
        for (int y = 0; y < size; y++)
        {
            for (int x = 0; x < size; x++)
            {
                washer.Render(x, y, colour);
                int p = ((y * size) + x) * 3;
                rgb[p] = Quantize(colour[0]);
                rgb[p + 1] = Quantize(colour[1]);
                rgb[p + 2] = Quantize(colour[2]);
            }
        }

        return new Scene(size, rgb, washer);
    }

    /// <summary>Changes a defect colour; receives the clean colour (0..255) of pixel (x, y) and overwrites it.</summary>
    private delegate void Painter(int x, int y, Span<double> colour);

    /// <summary>Draws a defect of the given type, paints it into <paramref name="rgb"/> and returns its mask.</summary>
    private static byte[] PaintDefect(Scene scene, byte[] rgb, string defectType, ref DeterministicRandom rng)
    {
        int size = scene.Size;
        var mask = new byte[size * size];
        Painter? painter = null;
        for (int attempt = 0; attempt < 50 && painter is null; attempt++)
        {
            Array.Clear(mask);
            Painter candidate = defectType switch
            {
                SyntheticDefectSet.Scratch => Scratch(scene, mask, ref rng),
                SyntheticDefectSet.Hole => Hole(scene, mask, ref rng),
                SyntheticDefectSet.Color => Contamination(scene, mask, ref rng),
                SyntheticDefectSet.Missing => MissingPiece(scene, mask, ref rng),
                _ => throw new ArgumentException($"Unknown synthetic defect type '{defectType}'.", nameof(defectType)),
            };
            int count = 0;
            foreach (byte m in mask)
            {
                count += m != 0 ? 1 : 0;
            }

            if (count >= MinDefectPixels)
            {
                painter = candidate;
            }
        }

        if (painter is null)
        {
            throw new InvalidOperationException($"No '{defectType}' defect of at least {MinDefectPixels} pixels could be placed on a {size}x{size} image.");
        }

        Span<double> c = stackalloc double[3];
        for (int y = 0; y < size; y++)
        {
            for (int x = 0; x < size; x++)
            {
                int pixel = (y * size) + x;
                if (mask[pixel] == 0)
                {
                    continue;
                }

                int p = pixel * 3;
                for (int k = 0; k < 3; k++)
                {
                    c[k] = rgb[p + k];
                }

                painter(x, y, c);
                byte r = Quantize(c[0]);
                byte g = Quantize(c[1]);
                byte b = Quantize(c[2]);
                if (r == rgb[p] && g == rgb[p + 1] && b == rgb[p + 2])
                {
                    // The defect must change every pixel of its mask: nudge the rare pixel that rounds back to its clean value.
                    r = Nudge(r);
                    g = Nudge(g);
                    b = Nudge(b);
                }

                rgb[p] = r;
                rgb[p + 1] = g;
                rgb[p + 2] = b;
            }
        }

        return mask;
    }

    private static byte Nudge(byte v) => (byte)(v < 128 ? v + 3 : v - 3);

    /// <summary>A curved thin line, brighter or darker than the surface; contrast from barely visible to strong.</summary>
    private static Painter Scratch(Scene scene, byte[] mask, ref DeterministicRandom rng)
    {
        int size = scene.Size;
        double unit = size / 256.0;
        (double sx, double sy) = scene.PickPoint(ref rng);
        double length = size * rng.Uniform(0.05, 0.3);
        double direction = rng.Uniform(0, 2 * Math.PI);
        double ex = sx + (length * DeterministicMath.Cos(direction));
        double ey = sy + (length * DeterministicMath.Sin(direction));
        double bend = length * rng.Uniform(-0.25, 0.25);
        double mx = ((sx + ex) / 2) - (bend * DeterministicMath.Sin(direction));
        double my = ((sy + ey) / 2) + (bend * DeterministicMath.Cos(direction));
        double half = Math.Max(0.5, unit * rng.Uniform(0.4, 1.6));
        double contrast = Lerp(15, 90, rng.NextDouble());
        double sign = rng.NextDouble() < 0.6 ? 1 : -1;
        ulong noiseSeed = rng.NextUInt64();

        const int Segments = 12;
        var px = new double[Segments + 1];
        var py = new double[Segments + 1];
        for (int i = 0; i <= Segments; i++)
        {
            double t = (double)i / Segments;
            double a = (1 - t) * (1 - t);
            double b = 2 * (1 - t) * t;
            double c = t * t;
            px[i] = (a * sx) + (b * mx) + (c * ex);
            py[i] = (a * sy) + (b * my) + (c * ey);
        }

        (int x0, int x1) = Span(px, half, size);
        (int y0, int y1) = Span(py, half, size);
        double half2 = half * half;
        for (int y = y0; y <= y1; y++)
        {
            for (int x = x0; x <= x1; x++)
            {
                int pixel = (y * size) + x;
                if (!scene.OnSurface(x, y))
                {
                    continue;
                }

                double qx = x + 0.5;
                double qy = y + 0.5;
                for (int i = 0; i < Segments; i++)
                {
                    if (SegmentDistanceSquared(qx, qy, px[i], py[i], px[i + 1], py[i + 1]) <= half2)
                    {
                        mask[pixel] = 255;
                        break;
                    }
                }
            }
        }

        return (x, y, colour) =>
        {
            double delta = sign * contrast * (0.8 + (0.2 * DeterministicRandom.Hash01(x, y, noiseSeed)));
            for (int k = 0; k < 3; k++)
            {
                colour[k] += delta;
            }
        };
    }

    /// <summary>A round dark spot (a hole or a dent), from a pin prick to a large hole, from faint to black.</summary>
    private static Painter Hole(Scene scene, byte[] mask, ref DeterministicRandom rng)
    {
        int size = scene.Size;
        (double cx, double cy) = scene.PickPoint(ref rng);
        double radius = Math.Max(1.0, size * rng.Uniform(0.012, 0.05));
        double strength = Lerp(0.2, 1.0, rng.NextDouble());
        FillDisks(scene, mask, new[] { (cx, cy, radius) }, surfaceOnly: true);
        double[] dark = { 24, 21, 19 };
        return (x, y, colour) =>
        {
            double dx = x + 0.5 - cx;
            double dy = y + 0.5 - cy;
            double depth = strength * (0.7 + (0.3 * Clamp01(1 - (Math.Sqrt((dx * dx) + (dy * dy)) / radius))));
            for (int k = 0; k < 3; k++)
            {
                colour[k] = Lerp(colour[k], dark[k], depth);
            }
        };
    }

    /// <summary>An irregular stain (one to three overlapping disks) tinted towards a foreign colour, from faint to strong.</summary>
    private static Painter Contamination(Scene scene, byte[] mask, ref DeterministicRandom rng)
    {
        int size = scene.Size;
        (double cx, double cy) = scene.PickPoint(ref rng);
        int blobs = 1 + rng.NextInt(3);
        var disks = new (double X, double Y, double R)[blobs];
        for (int i = 0; i < blobs; i++)
        {
            double r = Math.Max(1.2, size * rng.Uniform(0.012, 0.05));
            double ox = i == 0 ? 0 : rng.Uniform(-1, 1) * r;
            double oy = i == 0 ? 0 : rng.Uniform(-1, 1) * r;
            disks[i] = (cx + ox, cy + oy, r);
        }

        FillDisks(scene, mask, disks, surfaceOnly: true);
        double[] tint = s_contaminationColours[rng.NextInt(s_contaminationColours.Length)];
        double alpha = Lerp(0.15, 0.65, rng.NextDouble());
        return (x, y, colour) =>
        {
            double luminance = (colour[0] + colour[1] + colour[2]) / 3;
            double scale = luminance / 140;
            for (int k = 0; k < 3; k++)
            {
                colour[k] = Lerp(colour[k], tint[k] * scale, alpha);
            }
        };
    }

    /// <summary>
    /// A missing piece: on a texture a rectangular patch where the threads are gone and a flat backing shows
    /// (its brightness from clearly darker to the texture's own mean); on an object a bite out of the ring's rim,
    /// where the background shows through.
    /// </summary>
    private static Painter MissingPiece(Scene scene, byte[] mask, ref DeterministicRandom rng)
    {
        int size = scene.Size;
        if (scene.Object is { } washer)
        {
            double angle = rng.Uniform(0, 2 * Math.PI);
            bool outerRim = rng.NextDouble() < 0.7;
            double radius = Math.Max(1.5, size * rng.Uniform(0.025, 0.09));
            double rim = outerRim ? washer.OuterRadius : washer.InnerRadius;
            double cx = washer.CentreX + (rim * DeterministicMath.Cos(angle));
            double cy = washer.CentreY + (rim * DeterministicMath.Sin(angle));
            FillDisks(scene, mask, new[] { (cx, cy, radius) }, surfaceOnly: false);
            for (int i = 0; i < mask.Length; i++)
            {
                if (mask[i] != 0 && washer.Coverage(i % size, i / size) <= 0)
                {
                    mask[i] = 0;
                }
            }

            return washer.Background;
        }

        (double px, double py) = scene.PickPoint(ref rng);
        double halfWidth = Math.Max(1.5, size * rng.Uniform(0.02, 0.08));
        double halfHeight = Math.Max(1.5, size * rng.Uniform(0.02, 0.08));
        int x0 = Math.Max(0, (int)Math.Floor(px - halfWidth));
        int x1 = Math.Min(size - 1, (int)Math.Ceiling(px + halfWidth));
        int y0 = Math.Max(0, (int)Math.Floor(py - halfHeight));
        int y1 = Math.Min(size - 1, (int)Math.Ceiling(py + halfHeight));
        for (int y = y0; y <= y1; y++)
        {
            for (int x = x0; x <= x1; x++)
            {
                if (Math.Abs(x + 0.5 - px) <= halfWidth && Math.Abs(y + 0.5 - py) <= halfHeight)
                {
                    mask[(y * size) + x] = 255;
                }
            }
        }

        var mean = new double[3];
        for (int i = 0; i < scene.Rgb.Length; i++)
        {
            mean[i % 3] += scene.Rgb[i];
        }

        double level = rng.Uniform(0.45, 1.0) / (size * size);
        ulong noiseSeed = rng.NextUInt64();
        return (x, y, colour) =>
        {
            double grain = (DeterministicRandom.Hash01(x, y, noiseSeed) - 0.5) * 6;
            for (int k = 0; k < 3; k++)
            {
                colour[k] = (mean[k] * level) + grain;
            }
        };
    }

    private static void FillDisks(Scene scene, byte[] mask, (double X, double Y, double R)[] disks, bool surfaceOnly)
    {
        int size = scene.Size;
        foreach ((double cx, double cy, double r) in disks)
        {
            int x0 = Math.Max(0, (int)Math.Floor(cx - r));
            int x1 = Math.Min(size - 1, (int)Math.Ceiling(cx + r));
            int y0 = Math.Max(0, (int)Math.Floor(cy - r));
            int y1 = Math.Min(size - 1, (int)Math.Ceiling(cy + r));
            for (int y = y0; y <= y1; y++)
            {
                for (int x = x0; x <= x1; x++)
                {
                    double dx = x + 0.5 - cx;
                    double dy = y + 0.5 - cy;
                    int pixel = (y * size) + x;
                    if ((dx * dx) + (dy * dy) <= r * r && (!surfaceOnly || scene.OnSurface(x, y)))
                    {
                        mask[pixel] = 255;
                    }
                }
            }
        }
    }

    private static (int Min, int Max) Span(double[] values, double margin, int size)
    {
        double min = double.MaxValue;
        double max = double.MinValue;
        foreach (double v in values)
        {
            min = Math.Min(min, v);
            max = Math.Max(max, v);
        }

        return (Math.Max(0, (int)Math.Floor(min - margin - 1)), Math.Min(size - 1, (int)Math.Ceiling(max + margin + 1)));
    }

    private static double SegmentDistanceSquared(double qx, double qy, double ax, double ay, double bx, double by)
    {
        double vx = bx - ax;
        double vy = by - ay;
        double wx = qx - ax;
        double wy = qy - ay;
        double len2 = (vx * vx) + (vy * vy);
        double t = len2 > 0 ? Clamp01(((wx * vx) + (wy * vy)) / len2) : 0;
        double dx = wx - (t * vx);
        double dy = wy - (t * vy);
        return (dx * dx) + (dy * dy);
    }
}
