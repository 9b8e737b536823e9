using Microsoft.ML.Anomaly.Vision.Evaluation;

namespace Microsoft.ML.Anomaly.Vision;

/// <summary>
/// The F1-optimal decision threshold, as anomalib's F1AdaptiveThreshold computes it from validation data.
/// </summary>
public static class AdaptiveThreshold
{
    /// <summary>
    /// Returns the score threshold that maximises F1 = 2·precision·recall / (precision + recall) on the given
    /// validation scores, where a score at or above the threshold means "anomalous". The threshold is one of
    /// the given scores; among equal F1 values the lowest threshold is returned.
    /// </summary>
    /// <param name="scores">Anomaly scores (higher = more anomalous), finite.</param>
    /// <param name="labels">Ground truth for each score: true = anomalous.</param>
    /// <exception cref="ArgumentException">Lengths differ, a score is not finite, or only one class is present.</exception>
    public static float Compute(ReadOnlySpan<float> scores, ReadOnlySpan<bool> labels) =>
        ComputeWithF1(scores, labels).Threshold;

    /// <summary>As <see cref="Compute"/>, also returning the F1 score reached at the threshold.</summary>
    /// <param name="scores">Anomaly scores (higher = more anomalous), finite.</param>
    /// <param name="labels">Ground truth for each score: true = anomalous.</param>
    /// <exception cref="ArgumentException">Lengths differ, a score is not finite, or only one class is present.</exception>
    public static (float Threshold, double F1) ComputeWithF1(ReadOnlySpan<float> scores, ReadOnlySpan<bool> labels)
    {
        var bins = ExactScoreBins.Create(scores, labels, nameof(scores), nameof(labels));
        var (f1, bin) = AnomalyMetricMath.F1Max(bins.Negatives, bins.Positives, "image");
        return (bins.Values[bin], f1);
    }
}
