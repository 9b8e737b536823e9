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
        : base(env, nameof(DfmEstimator), Checked(options), producesMap: options.ScoreType == DfmScoreType.Fre) => _options = options;

    /// <summary>Fits DFM on the images of <paramref name="input"/>, all assumed to show good parts.</summary>
    /// <param name="input">Data with the image column (an MLImage or a text column of image paths).</param>
    /// <returns>The fitted transformer.</returns>
    public override DfmTransformer Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        using IChannel channel = Host.Start(nameof(Fit));
        OnnxBackbone backbone = BackboneFeatureExtraction.OpenBackbone(channel, _options);
        try
        {
            DfmModel model;
            using (FeatureStore features = BackboneFeatureExtraction.Extract(channel, input, _options, backbone))
            {
                var progress = BackboneFeatureExtraction.TrainingProgressSink(channel, _options.Progress);
                progress.Report(new TrainingProgress("fitting PCA", 0, 1, double.NaN));
                model = DfmTrainer.Fit(features, _options.ToTrainingOptions(), _options.CancellationToken);
                progress.Report(new TrainingProgress("fitting PCA", 1, 1, double.NaN));
            }
            channel.Info($"DFM keeps {model.ComponentCount} principal components of {model.FeatureDimension} feature dimensions.");
            return new DfmTransformer(Host, _options, backbone, model);
        }
        catch
        {
            backbone.Dispose();
            throw;
        }
    }

    private static DfmOptions Checked(DfmOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.ValidateAll(nameof(options));
        return options;
    }
}
