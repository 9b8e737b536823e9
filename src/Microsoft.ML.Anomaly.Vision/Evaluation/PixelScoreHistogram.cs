namespace Microsoft.ML.Anomaly.Vision.Evaluation;

/// <summary>
/// Streams anomaly maps and their ground-truth masks, one image at a time, into fixed-size score
/// histograms from which pixel AUROC, pixel F1-max and AUPRO are computed without keeping the maps.
/// </summary>
/// <remarks>
/// The histogram has <see cref="BinCount"/> equal-width bins over a range that adapts in one pass:
/// the first map sets a range four times its own value span; when a later map falls outside, the bin
/// width doubles (as often as needed) and the range is re-aligned so that old bins merge exactly into new
/// ones. The final bin width is therefore at most 4·(max − min)/<see cref="BinCount"/> of the observed pixel
/// scores (at least 262,144 levels across the score range with the default 2^20 bins). Pixels sharing a bin
/// count as tied scores. Every bin remembers the smallest score it received, so the reported F1 threshold
/// is a real pixel score. Memory: 28 bytes per bin (28 MiB by default), independent of the data size.
/// For AUPRO each mask is split into 8-connected regions per image (as anomalib does through OpenCV or
/// kornia); each anomalous pixel adds 1/|region| to its bin, so the suffix sums give the mean per-region overlap.
/// </remarks>
internal sealed class PixelScoreHistogram
{
    /// <summary>Default number of bins (2^20).</summary>
    public const int DefaultBinCount = 1 << 20;

    private readonly int _bins;
    private long[] _negatives = [];
    private long[] _positives = [];
    private double[] _overlap = [];
    private float[] _binMin = [];
    private double _lo;
    private double _width;
    private bool _initialized;
    private float _min = float.PositiveInfinity;
    private float _max = float.NegativeInfinity;
    private int[] _labels = [];
    private readonly List<int> _regionSizes = [];

    /// <summary>Creates an empty histogram with <paramref name="binCount"/> bins (at least 16).</summary>
    public PixelScoreHistogram(int binCount = DefaultBinCount)
    {
        if (binCount < 16)
            throw new ArgumentOutOfRangeException(nameof(binCount), binCount, "At least 16 bins are needed.");
        _bins = binCount;
    }

    /// <summary>Number of bins.</summary>
    public int BinCount => _bins;

    /// <summary>Current bin width in score units (0 before the first map).</summary>
    public double BinWidth => _initialized ? _width : 0;

    /// <summary>Number of ground-truth regions seen so far.</summary>
    public long RegionCount { get; private set; }

    /// <summary>Number of good pixels seen so far.</summary>
    public long GoodPixels { get; private set; }

    /// <summary>Number of anomalous pixels seen so far.</summary>
    public long AnomalousPixels { get; private set; }

    /// <summary>Smallest pixel score seen.</summary>
    public float Min => _min;

    /// <summary>Largest pixel score seen.</summary>
    public float Max => _max;

    /// <summary>
    /// Adds one map. <paramref name="mask"/> is the row-major ground truth of the same size (true = anomalous),
    /// or empty for an all-good image.
    /// </summary>
    public void Add(ReadOnlySpan<float> map, ReadOnlySpan<bool> mask, int height, int width)
    {
        int count = checked(height * width);
        if (map.Length != count)
            throw new ArgumentException($"The map has {map.Length} values, expected {height}×{width} = {count}.", nameof(map));
        if (!mask.IsEmpty && mask.Length != count)
            throw new ArgumentException($"The mask has {mask.Length} values, expected {height}×{width} = {count}.", nameof(mask));

        float mn = float.PositiveInfinity, mx = float.NegativeInfinity;
        for (int i = 0; i < map.Length; i++)
        {
            float v = map[i];
            if (!float.IsFinite(v))
                throw new ArgumentException($"The anomaly map holds a non-finite value ({v}) at pixel {i}.", nameof(map));
            if (v < mn) mn = v;
            if (v > mx) mx = v;
        }
        if (count == 0)
            return;
        EnsureRange(mn, mx);

        int regions = 0;
        bool anyAnomalous = false;
        if (!mask.IsEmpty)
        {
            foreach (bool m in mask)
            {
                if (m) { anyAnomalous = true; break; }
            }
        }
        if (anyAnomalous)
        {
            if (_labels.Length < count)
                _labels = new int[count];
            regions = ConnectedComponents.Label8(mask, height, width, _labels.AsSpan(0, count), _regionSizes);
        }

        long good = 0, bad = 0;
        for (int i = 0; i < count; i++)
        {
            float v = map[i];
            int b = BinOf(v);
            if (v < _binMin[b])
                _binMin[b] = v;
            if (anyAnomalous && mask[i])
            {
                _positives[b]++;
                _overlap[b] += 1.0 / _regionSizes[_labels[i] - 1];
                bad++;
            }
            else
            {
                _negatives[b]++;
                good++;
            }
        }
        GoodPixels += good;
        AnomalousPixels += bad;
        RegionCount += regions;
    }

    /// <summary>Pixel AUROC.</summary>
    public double Auroc() => AnomalyMetricMath.Auroc(_negatives, _positives, "pixel");

    /// <summary>Pixel F1-max and its threshold (the smallest pixel score in the chosen bin).</summary>
    public (double F1, float Threshold) F1Max()
    {
        var (f1, bin) = AnomalyMetricMath.F1Max(_negatives, _positives, "pixel");
        return (f1, _binMin[bin]);
    }

    /// <summary>AUPRO up to <paramref name="fprLimit"/>, normalised by the limit.</summary>
    public double Aupro(double fprLimit = AnomalyMetricMath.DefaultFprLimit)
    {
        AnomalyMetricMath.RequireBothClasses(_negatives, _positives, "pixel");
        return AnomalyMetricMath.Aupro(_negatives, _overlap, RegionCount, fprLimit);
    }

    private int BinOf(float v)
    {
        double b = Math.Floor((v - _lo) / _width);
        if (b < 0) return 0;
        if (b >= _bins) return _bins - 1;
        return (int)b;
    }

    private void EnsureRange(float mn, float mx)
    {
        if (!_initialized)
        {
            _negatives = new long[_bins];
            _positives = new long[_bins];
            _overlap = new double[_bins];
            _binMin = new float[_bins];
            Array.Fill(_binMin, float.PositiveInfinity);
            double span = (double)mx - mn;
            if (span <= 0)
                span = Math.Max(Math.Abs((double)mn), 1e-30) * 1e-6;
            _width = 4 * span / _bins;
            _lo = mn - (1.5 * span);
            _initialized = true;
            _min = mn;
            _max = mx;
            return;
        }
        float newMin = Math.Min(_min, mn), newMax = Math.Max(_max, mx);
        _min = newMin;
        _max = newMax;
        if (Fits(_lo, _width, newMin, newMax))
            return;

        // Double the bin width until an aligned range covers [newMin, newMax].
        for (int j = 1; ; j++)
        {
            double factor = Math.Pow(2, j);
            double width = _width * factor;
            double shift = Math.Floor((newMin - _lo) / width) * factor; // in old bins, multiple of factor
            double lo = _lo + (shift * _width);
            if (!Fits(lo, width, newMin, newMax))
                continue;
            Rebin(lo, width, shift, factor);
            return;
        }
    }

    private bool Fits(double lo, double width, double mn, double mx) =>
        mn >= lo && Math.Floor((mx - lo) / width) < _bins;

    private void Rebin(double lo, double width, double shift, double factor)
    {
        var negatives = new long[_bins];
        var positives = new long[_bins];
        var overlap = new double[_bins];
        var binMin = new float[_bins];
        Array.Fill(binMin, float.PositiveInfinity);
        for (int i = 0; i < _bins; i++)
        {
            if (_negatives[i] == 0 && _positives[i] == 0)
                continue;
            double nb = Math.Floor((i + 0.5 - shift) / factor);
            int b = nb < 0 ? 0 : nb >= _bins ? _bins - 1 : (int)nb;
            negatives[b] += _negatives[i];
            positives[b] += _positives[i];
            overlap[b] += _overlap[i];
            if (_binMin[i] < binMin[b])
                binMin[b] = _binMin[i];
        }
        _negatives = negatives;
        _positives = positives;
        _overlap = overlap;
        _binMin = binMin;
        _lo = lo;
        _width = width;
    }
}
