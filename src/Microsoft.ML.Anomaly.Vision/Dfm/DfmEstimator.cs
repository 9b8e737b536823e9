using Anomaly.Vision.Training;
using Microsoft.ML.Anomaly.Vision.Common;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Anomaly.Vision;

/// <summary>
/// Fits a <see cref="DfmTransformer"/>: backbone features of every training image (good parts only), then
/// the PCA and, for the likelihood score, the Gaussian. No gradient training is involved.
/// Create it with <c>mlContext.Transforms.DetectDfmAnomalies(...)</c>.
/// </summary>
public sealed class DfmEstimator : ImageAnomalyEstimatorBase<DfmTransformer>
{
    private readonly DfmOptions _options;

    internal DfmEstimator(IHostEnvironment env, DfmOptions options)
        : base(env, nameof(DfmEstimator), BackboneDetectorOptions.Checked(options), producesMap: options.ScoreType == DfmScoreType.Fre) => _options = options;

    /// <summary>Fits DFM on the images of <paramref name="input"/>, all assumed to show good parts.</summary>
    /// <param name="input">Data with the image column (an MLImage or a text column of image paths).</param>
    /// <returns>The fitted transformer.</returns>
    public override DfmTransformer Fit(IDataView input) =>
        BackboneFeatureExtraction.Fit(Host, input, _options, FeatureStorePrecision.Float32, BackboneFeatureExtraction.DefaultMemoryLimitBytes, FitOnFeatures);

    /// <summary>Fits on backbone features already extracted (of <see cref="DfmOptions.Layer"/>); the transformer owns <paramref name="backbone"/>.</summary>
    internal DfmTransformer FitOnFeatures(OnnxBackbone backbone, IFeatureSource features, FitRun run)
    {
        run.Progress.Report(new TrainingProgress("fitting PCA", 0, 1, double.NaN));
        DfmModel model = DfmTrainer.Fit(features, _options.ToTrainingOptions(run), run.CancellationToken);
        run.Progress.Report(new TrainingProgress("fitting PCA", 1, 1, double.NaN));
        return new DfmTransformer(Host, _options, backbone, model);
    }
}
