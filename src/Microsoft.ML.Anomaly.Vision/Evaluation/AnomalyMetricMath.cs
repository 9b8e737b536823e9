namespace Microsoft.ML.Anomaly.Vision.Evaluation;

/// <summary>
/// Threshold-sweep metrics computed from per-bin class counts. A "bin" holds every sample whose score
/// falls into it; bins are ordered by ascending score and every bin is one candidate threshold
/// (a sample is predicted anomalous when its score is at or above the threshold). Samples sharing a bin
/// are ties: they enter the curves together, which gives the diagonal trapezoid segment that
/// scikit-learn and torchmetrics use for tied scores. With one bin per distinct score the results are exact.
/// </summary>
internal static class AnomalyMetricMath
{
    /// <summary>Default upper false-positive-rate limit of AUPRO.</summary>
    public const double DefaultFprLimit = 0.3;

    /// <summary>Area under the ROC curve (trapezoid over the distinct thresholds, starting at (0, 0)).</summary>
    public static double Auroc(ReadOnlySpan<long> negatives, ReadOnlySpan<long> positives, string what)
    {
        CheckLengths(negatives, positives);
        var (totalNegatives, totalPositives) = RequireBothClasses(negatives, positives, what);
        double area = 0;
        long tp = 0, fp = 0;
        for (int i = negatives.Length - 1; i >= 0; i--)
        {
            long n = negatives[i], p = positives[i];
            if (n == 0 && p == 0)
                continue;
            // Trapezoid in count units: width n false positives, mean height of the true positives.
            area += n * (tp + (p / 2.0));
            tp += p;
            fp += n;
        }
        return area / ((double)totalNegatives * totalPositives);
    }

    /// <summary>
    /// ROC curve points (false positive rate, true positive rate) from the strictest threshold to the
    /// loosest, starting with (0, 0) and ending with (1, 1).
    /// </summary>
    public static (double[] Fpr, double[] Tpr) RocCurve(ReadOnlySpan<long> negatives, ReadOnlySpan<long> positives, string what)
    {
        CheckLengths(negatives, positives);
        var (totalNegatives, totalPositives) = RequireBothClasses(negatives, positives, what);
        var fpr = new List<double> { 0 };
        var tpr = new List<double> { 0 };
        long tp = 0, fp = 0;
        for (int i = negatives.Length - 1; i >= 0; i--)
        {
            if (negatives[i] == 0 && positives[i] == 0)
                continue;
            tp += positives[i];
            fp += negatives[i];
            fpr.Add((double)fp / totalNegatives);
            tpr.Add((double)tp / totalPositives);
        }
        return (fpr.ToArray(), tpr.ToArray());
    }

    /// <summary>
    /// Largest F1 score over the precision-recall curve, F1 = 2·P·R / (P + R + 1e-10), and the bin whose
    /// threshold reaches it. Among equal F1 values the lowest threshold wins (the first maximum of the
    /// curve ordered by ascending threshold, as anomalib's F1 metrics take it).
    /// </summary>
    public static (double F1, int Bin) F1Max(ReadOnlySpan<long> negatives, ReadOnlySpan<long> positives, string what)
    {
        CheckLengths(negatives, positives);
        var (_, totalPositives) = RequireBothClasses(negatives, positives, what);
        double best = double.NegativeInfinity;
        int bestBin = -1;
        long tp = 0, fp = 0;
        // Walk from the highest threshold down; ">=" lets a lower threshold with an equal F1 replace the choice.
        for (int i = negatives.Length - 1; i >= 0; i--)
        {
            if (negatives[i] == 0 && positives[i] == 0)
                continue;
            tp += positives[i];
            fp += negatives[i];
            double precision = (double)tp / (tp + fp);
            double recall = (double)tp / totalPositives;
            double f1 = 2 * precision * recall / (precision + recall + 1e-10);
            if (f1 >= best)
            {
                best = f1;
                bestBin = i;
            }
        }
        return (best, bestBin);
    }

    /// <summary>
    /// Normalised area under the per-region-overlap curve up to <paramref name="fprLimit"/>.
    /// For every threshold the x value is the false positive rate over all good pixels and the y value is
    /// the mean, over all ground-truth regions, of the fraction of the region's pixels at or above the threshold.
    /// <paramref name="regionOverlap"/>[b] holds Σ 1/|region| over the anomalous pixels in bin b, so the
    /// suffix sums divided by <paramref name="regionCount"/> give the mean overlap. The curve starts at (0, 0),
    /// is cut at the limit with linear interpolation, integrated by trapezoids and divided by the limit.
    /// </summary>
    public static double Aupro(ReadOnlySpan<long> negatives, ReadOnlySpan<double> regionOverlap, long regionCount,
        double fprLimit = DefaultFprLimit)
    {
        if (negatives.Length != regionOverlap.Length)
            throw new ArgumentException("Bin arrays differ in length.", nameof(regionOverlap));
        if (!(fprLimit > 0 && fprLimit <= 1))
            throw new ArgumentOutOfRangeException(nameof(fprLimit), fprLimit, "The false positive rate limit must lie in (0, 1].");
        long totalNegatives = 0;
        foreach (long n in negatives)
            totalNegatives += n;
        if (totalNegatives == 0 || regionCount == 0)
            throw new ArgumentException(
                "AUPRO needs both good and anomalous pixels: " +
                (totalNegatives == 0 ? "no good (background) pixel was found." : "no anomalous region was found in the masks."));

        double area = 0, x = 0, y = 0, overlapSum = 0;
        long fp = 0;
        for (int i = negatives.Length - 1; i >= 0; i--)
        {
            if (negatives[i] == 0 && regionOverlap[i] == 0)
                continue;
            fp += negatives[i];
            overlapSum += regionOverlap[i];
            double nx = (double)fp / totalNegatives;
            double ny = Math.Min(1.0, overlapSum / regionCount);
            if (nx >= fprLimit)
            {
                // Interpolate the point on the segment at the limit and stop.
                double yAtLimit = nx > x ? y + ((ny - y) * (fprLimit - x) / (nx - x)) : ny;
                area += (fprLimit - x) * (y + yAtLimit) / 2;
                return area / fprLimit;
            }
            area += (nx - x) * (y + ny) / 2;
            x = nx;
            y = ny;
        }
        // Unreachable in practice: the loosest threshold has FPR 1.
        return area / fprLimit;
    }

    /// <summary>Throws when the two count arrays differ in length.</summary>
    private static void CheckLengths(ReadOnlySpan<long> negatives, ReadOnlySpan<long> positives)
    {
        if (negatives.Length != positives.Length)
            throw new ArgumentException("Bin arrays differ in length.", nameof(positives));
    }

    /// <summary>Totals of both classes; throws the "needs both" error when either is empty.</summary>
    public static (long Negatives, long Positives) RequireBothClasses(ReadOnlySpan<long> negatives, ReadOnlySpan<long> positives, string what)
    {
        long n = 0, p = 0;
        for (int i = 0; i < negatives.Length; i++)
        {
            n += negatives[i];
            p += positives[i];
        }
        if (n == 0 || p == 0)
            throw new ArgumentException(
                $"The {what} metrics need both good and anomalous {what}s, but only " +
                $"{(n == 0 ? "anomalous" : "good")} {what}s were given ({n} good, {p} anomalous).");
        return (n, p);
    }
}

/// <summary>Exact bins: one bin per distinct score, built by sorting.</summary>
internal sealed class ExactScoreBins
{
    /// <summary>Distinct scores, ascending.</summary>
    public float[] Values { get; }

    /// <summary>Number of good samples per distinct score.</summary>
    public long[] Negatives { get; }

    /// <summary>Number of anomalous samples per distinct score.</summary>
    public long[] Positives { get; }

    private ExactScoreBins(float[] values, long[] negatives, long[] positives)
    {
        Values = values;
        Negatives = negatives;
        Positives = positives;
    }

    /// <summary>Groups <paramref name="scores"/> by distinct value, counting labels (true = anomalous).</summary>
    public static ExactScoreBins Create(ReadOnlySpan<float> scores, ReadOnlySpan<bool> labels, string scoresName = "scores", string labelsName = "labels")
    {
        if (scores.Length != labels.Length)
            throw new ArgumentException(
                $"'{scoresName}' has {scores.Length} entries but '{labelsName}' has {labels.Length}; they must match.", labelsName);
        var sorted = scores.ToArray();
        var order = new int[sorted.Length];
        for (int i = 0; i < order.Length; i++)
        {
            if (!float.IsFinite(sorted[i]))
                throw new ArgumentException($"'{scoresName}' holds a non-finite value ({sorted[i]}) at index {i}.", scoresName);
            order[i] = i;
        }
        Array.Sort(sorted, order);
        var values = new List<float>();
        var negatives = new List<long>();
        var positives = new List<long>();
        for (int i = 0; i < sorted.Length; i++)
        {
            if (values.Count == 0 || sorted[i] != values[^1])
            {
                values.Add(sorted[i]);
                negatives.Add(0);
                positives.Add(0);
            }
            if (labels[order[i]])
                positives[^1]++;
            else
                negatives[^1]++;
        }
        return new ExactScoreBins(values.ToArray(), negatives.ToArray(), positives.ToArray());
    }
}
