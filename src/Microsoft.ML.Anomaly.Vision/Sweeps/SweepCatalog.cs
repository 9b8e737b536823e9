using Microsoft.ML.Anomaly.Vision;
using Microsoft.ML.Data;

namespace Microsoft.ML;

/// <summary>Sweeps over the image anomaly detectors on <c>mlContext.AnomalyDetection</c>.</summary>
public static class SweepCatalog
{
    /// <summary>
    /// Creates a sweep over CFA, DFM and CFlow and their settings (<see cref="ImageDetectorSweepOptions.SearchSpace"/>):
    /// <c>Fit(train, validation?)</c> runs the trials, validated on labelled images or on synthetic defects, and returns
    /// the leaderboard and the best fitted model. The MLContext's seed is used unless the options set one, and its log
    /// receives the sweep's messages.
    /// </summary>
    /// <param name="catalog">The anomaly detection catalog.</param>
    /// <param name="options">The sweep's options (the backbone defaults to the ImageNet ResNet-18).</param>
    public static ImageDetectorSweep SweepImageDetectors(this AnomalyDetectionCatalog catalog, ImageDetectorSweepOptions options)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        return new ImageDetectorSweep(CatalogUtils.GetEnvironment(catalog), options);
    }
}
