using Anomaly.Vision.Training;
using Microsoft.ML.Anomaly.Vision.Common;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Anomaly.Vision;

/// <summary>
/// Fits a <see cref="CflowTransformer"/>: runs the training images (good parts only) through the frozen
/// backbone once and trains one conditional normalizing flow per layer with TorchSharp.
/// Create it with <c>mlContext.Transforms.DetectCflowAnomalies(...)</c>.
/// </summary>
public sealed class CflowEstimator : ImageAnomalyEstimatorBase<CflowTransformer>
{
    private readonly CflowOptions _options;

    internal CflowEstimator(IHostEnvironment env, CflowOptions options)
        : base(env, nameof(CflowEstimator), BackboneDetectorOptions.Checked(options), producesMap: true) => _options = options;

    /// <summary>Trains CFlow on the images of <paramref name="input"/>, all assumed to show good parts.</summary>
    /// <param name="input">Data with the image column (an MLImage or a text column of image paths).</param>
    /// <returns>The fitted transformer.</returns>
    public override CflowTransformer Fit(IDataView input) =>
        BackboneFeatureExtraction.Fit(Host, input, _options, FeatureStorePrecision.Float32, BackboneFeatureExtraction.DefaultMemoryLimitBytes,
            FitOnFeatures, _options.CheckFiberBatch);

    /// <summary>Trains on backbone features already extracted (in the order of <see cref="CflowOptions.Layers"/>); the transformer owns <paramref name="backbone"/>.</summary>
    internal CflowTransformer FitOnFeatures(OnnxBackbone backbone, IFeatureSource features, FitRun run) =>
        new(Host, _options, backbone, CflowTrainer.Train(features, _options.ToTrainingOptions(run), run.Progress, run.CancellationToken));
}
