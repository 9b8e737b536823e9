using Microsoft.ML.Anomaly.Vision.Evaluation;

namespace Microsoft.ML.Anomaly.Vision.Tests.Evaluation;

[TestClass]
public sealed class AnomalyMetricMathTests
{
    private static double Auroc(float[] scores, bool[] labels)
    {
        var bins = ExactScoreBins.Create(scores, labels);
        return AnomalyMetricMath.Auroc(bins.Negatives, bins.Positives, "image");
    }

    [TestMethod]
    public void AurocCountsPairsWithoutTies()
    {
        // positives 0.35, 0.8; negatives 0.1, 0.4: 0.35 beats 0.1 only, 0.8 beats both → 3 of 4 pairs.
        Assert.AreEqual(0.75, Auroc([0.1f, 0.4f, 0.35f, 0.8f], [false, false, true, true]), 1e-12);
    }

    [TestMethod]
    public void AurocCountsTiesAsHalfPairs()
    {
        // positives 0.5, 0.9; negatives 0.5, 0.2: the tie 0.5/0.5 counts 1/2 (diagonal trapezoid) → 3.5 / 4.
        Assert.AreEqual(0.875, Auroc([0.5f, 0.5f, 0.2f, 0.9f], [true, false, false, true]), 1e-12);
        // All scores tied → the diagonal only.
        Assert.AreEqual(0.5, Auroc([1f, 1f, 1f], [true, false, false]), 1e-12);
    }

    [TestMethod]
    public void RocCurveStartsAtOriginAndWalksDistinctThresholds()
    {
        var bins = ExactScoreBins.Create([0.5f, 0.5f, 0.2f, 0.9f], [true, false, false, true]);
        var (fpr, tpr) = AnomalyMetricMath.RocCurve(bins.Negatives, bins.Positives, "image");
        CollectionAssert.AreEqual(new[] { 0, 0, 0.5, 1 }, fpr);
        CollectionAssert.AreEqual(new[] { 0, 0.5, 1, 1 }, tpr);
    }

    [TestMethod]
    public void F1MaxMatchesPrecisionRecallSweep()
    {
        // threshold 0.35 → TP 2, FP 1: P 2/3, R 1, F1 0.8 (0.8 alone gives F1 2/3).
        var (threshold, f1) = AdaptiveThreshold.ComputeWithF1([0.1f, 0.4f, 0.35f, 0.8f], [false, false, true, true]);
        Assert.AreEqual(0.35f, threshold);
        Assert.AreEqual(0.8, f1, 1e-9);
        Assert.AreEqual(3.3f, AdaptiveThreshold.Compute([2.3f, 1.6f, 2.6f, 7.9f, 3.3f], [false, false, false, true, true]));
    }

    [TestMethod]
    public void F1MaxTieTakesLowestThreshold()
    {
        // 4 → P 1, R 1/2 → F1 2/3; 1 → P 1/2, R 1 → F1 2/3; between lower. The lowest threshold wins.
        var (threshold, f1) = AdaptiveThreshold.ComputeWithF1([4f, 3f, 2f, 1f], [true, false, false, true]);
        Assert.AreEqual(1f, threshold);
        Assert.AreEqual(2.0 / 3, f1, 1e-9);
    }

    [TestMethod]
    public void SingleClassInputIsRejected()
    {
        var e = Assert.ThrowsExactly<ArgumentException>(() => AdaptiveThreshold.Compute([0.1f, 0.2f], [false, false]));
        StringAssert.Contains(e.Message, "need both good and anomalous");
        Assert.ThrowsExactly<ArgumentException>(() => Auroc([0.1f, 0.2f], [true, true]));
        var mismatch = Assert.ThrowsExactly<ArgumentException>(() => AdaptiveThreshold.Compute([0.1f, 0.2f], [true]));
        Assert.AreEqual("labels", mismatch.ParamName);
        Assert.ThrowsExactly<ArgumentException>(() => AdaptiveThreshold.Compute([float.NaN, 0.2f], [true, false]));
    }

    [TestMethod]
    public void ConnectedComponentsUseEightConnectivity()
    {
        var sizes = new List<int>();
        var labels = new int[9];
        // Diagonal chain: one region under 8-connectivity (three under 4-connectivity).
        bool[] diagonal = [true, false, false, false, true, false, false, false, true];
        Assert.AreEqual(1, ConnectedComponents.Label8(diagonal, 3, 3, labels, sizes));
        CollectionAssert.AreEqual(new[] { 3 }, sizes);
        // Two pairs two rows apart: two regions.
        bool[] pairs = [true, true, false, false, false, false, false, true, true];
        Assert.AreEqual(2, ConnectedComponents.Label8(pairs, 3, 3, labels, sizes));
        CollectionAssert.AreEqual(new[] { 2, 2 }, sizes);
        CollectionAssert.AreEqual(new[] { 1, 1, 0, 0, 0, 0, 0, 2, 2 }, labels);
    }

    // One 1×13 image: region A = pixel 0 (size 1), region B = pixels 2-3 (size 2), ten good pixels.
    private static readonly float[] ProMap = [0.95f, 0.8f, 0.9f, 0.5f, 0.5f, 0.45f, 0.4f, 0.3f, 0.2f, 0.1f, 0.05f, 0.02f, 0.01f];
    private static readonly bool[] ProMask = [true, false, true, true, false, false, false, false, false, false, false, false, false];

    [TestMethod]
    public void PixelMetricsMatchHandComputedCurve()
    {
        var h = new PixelScoreHistogram();
        h.Add(ProMap, ProMask, 1, 13);
        Assert.AreEqual(2, h.RegionCount);
        Assert.AreEqual(10, h.GoodPixels);
        Assert.AreEqual(3, h.AnomalousPixels);
        // AUROC: 0.95 and 0.9 beat all 10 good pixels, 0.5 beats 8 and ties 1 → 28.5 / 30.
        Assert.AreEqual(0.95, h.Auroc(), 1e-12);
        // F1: 0.95 → 0.5; 0.9 → TP 2, FP 0, R 2/3 → 0.8; 0.8 → 2/3; 0.5 → P 0.6, R 1 → 0.75.
        var (f1, threshold) = h.F1Max();
        Assert.AreEqual(0.8, f1, 1e-9);
        Assert.AreEqual(0.9f, threshold);
        // PRO curve: (0,0) (0,.5) (0,.75) (.1,.75) (.2,1) (.3,1): .075 + .0875 + .1 = .2625, / .3.
        Assert.AreEqual(0.875, h.Aupro(), 1e-9);
        // Cut at 0.15: y(.15) = .875 → .075 + .040625 = .115625, / .15.
        Assert.AreEqual(0.115625 / 0.15, h.Aupro(0.15), 1e-9);
    }

    [TestMethod]
    public void HistogramGrowsItsRangeWithoutLosingCounts()
    {
        // Feed the same pixels as three images whose ranges widen: the result must match the single-image one.
        var h = new PixelScoreHistogram();
        h.Add([0.02f, 0.01f], [], 1, 2);
        h.Add([0.3f, 0.2f, 0.1f, 0.05f], [], 2, 2);
        h.Add(ProMap[..7], ProMask[..7], 1, 7);
        Assert.AreEqual(0.95, h.Auroc(), 1e-12);
        Assert.AreEqual(0.9f, h.F1Max().Threshold);
        Assert.AreEqual(0.875, h.Aupro(), 1e-9);
        Assert.IsTrue(h.BinWidth <= 4 * (0.95 - 0.01) / h.BinCount, $"bin width {h.BinWidth}");
    }

    [TestMethod]
    public void CoarseBinsTreatNearbyScoresAsTies()
    {
        // 16 bins over the first map's span [0, 1] × 4: width 0.25, so 0.0 and 0.1 share a bin.
        var h = new PixelScoreHistogram(16);
        h.Add([0.0f, 0.3f, 0.1f, 1.0f], [false, false, true, true], 2, 2);
        Assert.AreEqual(0.25, h.BinWidth, 1e-12);
        // Pairs: 1.0 beats both; 0.1 ties 0.0 (same bin) and loses to 0.3 → 2.5 / 4 (exact would be 0.75).
        Assert.AreEqual(0.625, h.Auroc(), 1e-12);
        // F1 2/3 at the top bin and at the lowest bin; the lowest wins, reported as its smallest score 0.0.
        var (f1, threshold) = h.F1Max();
        Assert.AreEqual(2.0 / 3, f1, 1e-9);
        Assert.AreEqual(0.0f, threshold);
        // Growing to include 10: width doubles until (10 − 0) fits; bound 4·span/bins.
        h.Add([10f], [], 1, 1);
        Assert.IsTrue(h.BinWidth <= 4 * 10.0 / 16, $"bin width {h.BinWidth}");
        Assert.AreEqual(3, h.GoodPixels);
    }

    [TestMethod]
    public void PixelMetricsNeedBothClasses()
    {
        var h = new PixelScoreHistogram(64);
        h.Add([0.1f, 0.2f], [], 1, 2);
        var e = Assert.ThrowsExactly<ArgumentException>(() => h.Auroc());
        StringAssert.Contains(e.Message, "need both good and anomalous pixels");
        Assert.ThrowsExactly<ArgumentException>(() => h.Aupro());
        Assert.ThrowsExactly<ArgumentException>(() => h.Add([float.PositiveInfinity], [], 1, 1));
    }

    [TestMethod]
    public void MinMaxNormalizationCentresTheThreshold()
    {
        Assert.AreEqual(0.75f, MinMaxNormalization.Normalize(3f, 2f, 0f, 4f));
        Assert.AreEqual(0.5f, MinMaxNormalization.Normalize(2f, 2f, 0f, 4f));
        float[] values = [10f, -5f, 1f];
        MinMaxNormalization.Normalize(values, 2f, 0f, 4f, values);
        CollectionAssert.AreEqual(new[] { 1f, 0f, 0.25f }, values);
        var e = Assert.ThrowsExactly<ArgumentException>(() => MinMaxNormalization.Normalize(1f, 1f, 2f, 2f));
        Assert.AreEqual("max", e.ParamName);
    }
}
