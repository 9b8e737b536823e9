using Anomaly.Vision.Training;
using Microsoft.ML.Anomaly.Vision.Common;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Anomaly.Vision;

/// <summary>
/// Fits a <see cref="CfaTransformer"/>: runs the training images (good parts only) through the frozen
/// backbone once, builds the memory bank and trains CFA's descriptor with TorchSharp.
/// Create it with <c>mlContext.Transforms.DetectCfaAnomalies(...)</c>.
/// </summary>
public sealed class CfaEstimator : ImageAnomalyEstimatorBase<CfaTransformer>
{
    private readonly CfaOptions _options;

    internal CfaEstimator(IHostEnvironment env, CfaOptions options)
        : base(env, nameof(CfaEstimator), BackboneDetectorOptions.Checked(options), producesMap: true) => _options = options;

    /// <summary>Trains CFA on the images of <paramref name="input"/>, all assumed to show good parts.</summary>
    /// <param name="input">Data with the image column (an MLImage or a text column of image paths).</param>
    /// <returns>The fitted transformer.</returns>
    public override CfaTransformer Fit(IDataView input) =>
        BackboneFeatureExtraction.Fit(Host, input, _options, _options.FeaturePrecision, _options.FeatureMemoryLimitBytes, FitOnFeatures);

    /// <summary>Trains on backbone features already extracted (in the order of <see cref="CfaOptions.Layers"/>); the transformer owns <paramref name="backbone"/>.</summary>
    internal CfaTransformer FitOnFeatures(OnnxBackbone backbone, IFeatureSource features, FitRun run) =>
        new(Host, _options, backbone, CfaTrainer.Train(features, _options.ToTrainingOptions(run), run.Progress, run.CancellationToken));
}
