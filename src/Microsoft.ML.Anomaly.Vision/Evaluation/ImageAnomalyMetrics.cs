using System.Globalization;

namespace Microsoft.ML.Anomaly.Vision;

/// <summary>
/// Quality of an image anomaly detector on a labelled test set, with the definitions of anomalib's metrics.
/// Image metrics use one score per image; pixel metrics use every pixel of the anomaly maps against the
/// ground-truth masks. A sample is predicted anomalous when its score is at or above a threshold.
/// </summary>
public sealed class ImageAnomalyMetrics
{
    /// <summary>
    /// Area under the image-level ROC curve: true positive rate against false positive rate over all distinct
    /// score thresholds, integrated with the trapezoid rule (tied scores give a diagonal segment, as in
    /// scikit-learn and torchmetrics). 1 = perfect separation, 0.5 = chance.
    /// </summary>
    public double ImageAuroc { get; init; }

    /// <summary>
    /// Largest image-level F1 score, 2·precision·recall / (precision + recall), over every threshold of the
    /// precision-recall curve (anomalib's F1Max / F1AdaptiveThreshold).
    /// </summary>
    public double ImageF1Max { get; init; }

    /// <summary>
    /// The image score threshold that reaches <see cref="ImageF1Max"/>: an image score at or above it is
    /// predicted anomalous. It is one of the observed scores; among equal F1 values the lowest threshold is taken.
    /// </summary>
    public double ImageF1Threshold { get; init; }

    /// <summary>
    /// Area under the pixel-level ROC curve over all pixels of all anomaly maps (mask pixel &gt; 0 = anomalous);
    /// null when no maps or masks were evaluated. Pixel scores are grouped into 2^20 histogram bins whose width
    /// is at most 4·(max − min)/2^20 of the observed map values; pixels in one bin count as ties.
    /// </summary>
    public double? PixelAuroc { get; init; }

    /// <summary>Largest pixel-level F1 score over all thresholds (same definition as <see cref="ImageF1Max"/>); null without maps and masks.</summary>
    public double? PixelF1Max { get; init; }

    /// <summary>
    /// The pixel score threshold that reaches <see cref="PixelF1Max"/> (the smallest observed pixel score in the
    /// chosen histogram bin); null without maps and masks.
    /// </summary>
    public double? PixelF1Threshold { get; init; }

    /// <summary>
    /// Area under the per-region-overlap (PRO) curve up to a false positive rate of 0.3, divided by 0.3.
    /// Each mask is split into 8-connected regions per image. For each threshold, x is the false positive rate
    /// over all good pixels and y the mean over all regions of the fraction of the region's pixels at or above
    /// the threshold; the curve starts at (0, 0) and is cut at 0.3 by linear interpolation. This is the curve that
    /// anomalib's AUPRO approximates by resampling per-region ROC curves onto a common grid; here it is evaluated
    /// at every histogram threshold directly. Null without maps and masks.
    /// </summary>
    public double? Aupro { get; init; }

    /// <summary>Number of good (normal) test images.</summary>
    public long GoodImages { get; init; }

    /// <summary>Number of anomalous test images.</summary>
    public long AnomalousImages { get; init; }

    /// <summary>A one-line summary with four decimals.</summary>
    public override string ToString()
    {
        static string F(double? v) => v is double d ? d.ToString("F4", CultureInfo.InvariantCulture) : "n/a";
        return $"ImageAUROC={F(ImageAuroc)} ImageF1Max={F(ImageF1Max)} (threshold {F(ImageF1Threshold)}) " +
               $"PixelAUROC={F(PixelAuroc)} PixelF1Max={F(PixelF1Max)} (threshold {F(PixelF1Threshold)}) AUPRO={F(Aupro)}";
    }
}
