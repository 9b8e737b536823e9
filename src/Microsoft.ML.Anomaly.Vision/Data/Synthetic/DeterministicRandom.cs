namespace Microsoft.ML.Anomaly.Vision;

/// <summary>
/// SplitMix64 pseudo-random generator plus integer hashing. Only integer arithmetic and exact floating-point
/// conversions are used, so a seed gives the same sequence on every runtime and processor.
/// </summary>
internal struct DeterministicRandom
{
    private ulong _state;

    public DeterministicRandom(ulong seed) => _state = seed;

    public ulong NextUInt64()
    {
        _state += 0x9E3779B97F4A7C15UL;
        return Mix(_state);
    }

    /// <summary>Uniform in [0, 1).</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / 9007199254740992.0);

    /// <summary>Uniform in [min, max).</summary>
    public double Uniform(double min, double max) => min + ((max - min) * NextDouble());

    /// <summary>Uniform integer in [0, count).</summary>
    public int NextInt(int count) => (int)((NextUInt64() >> 33) % (ulong)count);

    /// <summary>The SplitMix64 finaliser: a bijective 64-bit mix.</summary>
    public static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>Combines a hash with one more value.</summary>
    public static ulong Combine(ulong hash, ulong value) => Mix(hash ^ (value + 0x9E3779B97F4A7C15UL + (hash << 6) + (hash >> 2)));

    /// <summary>A stable 64-bit hash of a string (FNV-1a over UTF-16 code units).</summary>
    public static ulong HashString(string text)
    {
        ulong h = 0xCBF29CE484222325UL;
        foreach (char c in text)
        {
            h = (h ^ c) * 0x100000001B3UL;
        }

        return Mix(h);
    }

    /// <summary>A hash of a lattice point, uniform in [0, 1).</summary>
    public static double Hash01(int x, int y, ulong seed)
    {
        ulong h = seed ^ ((ulong)(uint)x * 0x9E3779B97F4A7C15UL) ^ ((ulong)(uint)y * 0xC2B2AE3D27D4EB4FUL);
        return (Mix(h) >> 11) * (1.0 / 9007199254740992.0);
    }
}

/// <summary>
/// Smooth value noise in [0, 1) over a square pixel grid: lattice hashes every <c>scale</c> pixels, interpolated
/// bilinearly with smoothstep weights. Small: it keeps the lattice and the per-axis weights only.
/// </summary>
internal sealed class ValueNoise
{
    private readonly double[] _lattice;
    private readonly int _cells;
    private readonly int[] _cell;
    private readonly double[] _weight;

    public ValueNoise(int size, double scale, ulong seed)
    {
        _cells = (int)Math.Floor((size - 1) / scale) + 2;
        _lattice = new double[_cells * _cells];
        for (int j = 0; j < _cells; j++)
        {
            for (int i = 0; i < _cells; i++)
            {
                _lattice[(j * _cells) + i] = DeterministicRandom.Hash01(i, j, seed);
            }
        }

        _cell = new int[size];
        _weight = new double[size];
        for (int k = 0; k < size; k++)
        {
            double u = k / scale;
            double f = Math.Floor(u);
            double t = u - f;
            _cell[k] = (int)f;
            _weight[k] = t * t * (3 - (2 * t));
        }
    }

    /// <summary>The noise at pixel (x, y).</summary>
    public double At(int x, int y)
    {
        int i = (_cell[y] * _cells) + _cell[x];
        double tx = _weight[x];
        double top = _lattice[i] + ((_lattice[i + 1] - _lattice[i]) * tx);
        double bottom = _lattice[i + _cells] + ((_lattice[i + _cells + 1] - _lattice[i + _cells]) * tx);
        return top + ((bottom - top) * _weight[y]);
    }
}

/// <summary>
/// Sine and cosine from a fixed polynomial, so results do not depend on the platform's maths library.
/// Absolute error below 1e-9 over any argument the generator uses.
/// </summary>
internal static class DeterministicMath
{
    private const double TwoPi = 2 * Math.PI;
    private const double HalfPi = Math.PI / 2;

    public static double Sin(double x)
    {
        double r = x - (Math.Round(x / TwoPi) * TwoPi);
        if (r > HalfPi)
        {
            r = Math.PI - r;
        }
        else if (r < -HalfPi)
        {
            r = -Math.PI - r;
        }

        double r2 = r * r;
        double p = -1.0 / 1307674368000.0;
        p = (1.0 / 6227020800.0) + (r2 * p);
        p = (-1.0 / 39916800.0) + (r2 * p);
        p = (1.0 / 362880.0) + (r2 * p);
        p = (-1.0 / 5040.0) + (r2 * p);
        p = (1.0 / 120.0) + (r2 * p);
        p = (-1.0 / 6.0) + (r2 * p);
        p = 1.0 + (r2 * p);
        return r * p;
    }

    public static double Cos(double x) => Sin(x + HalfPi);
}
