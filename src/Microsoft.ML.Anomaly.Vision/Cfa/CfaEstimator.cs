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
        : base(env, nameof(CfaEstimator), Checked(options), producesMap: true) => _options = options;

    /// <summary>Trains CFA on the images of <paramref name="input"/>, all assumed to show good parts.</summary>
    /// <param name="input">Data with the image column (an MLImage or a text column of image paths).</param>
    /// <returns>The fitted transformer.</returns>
    public override CfaTransformer Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        using IChannel channel = Host.Start(nameof(Fit));
        OnnxBackbone backbone = BackboneFeatureExtraction.OpenBackbone(channel, _options);
        try
        {
            CfaModel model;
            using (FeatureStore features = BackboneFeatureExtraction.Extract(channel, input, _options, backbone,
                       _options.FeaturePrecision, _options.FeatureMemoryLimitBytes))
            {
                model = CfaTrainer.Train(features, _options.ToTrainingOptions(),
                    BackboneFeatureExtraction.TrainingProgressSink(channel, _options.Progress), _options.CancellationToken);
            }
            return new CfaTransformer(Host, _options, backbone, model);
        }
        catch
        {
            backbone.Dispose();
            throw;
        }
    }

    private static CfaOptions Checked(CfaOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.ValidateAll(nameof(options));
        return options;
    }
}
