using Anomaly.Vision.Training;
using Microsoft.ML.Anomaly.Vision.Common;

namespace Microsoft.ML.Anomaly.Vision;

/// <summary>
/// Options of <see cref="DfmEstimator"/> (DFM, deep feature modeling): pooled features of one backbone layer,
/// a PCA keeping a share of the variance, and a feature-reconstruction-error or Gaussian-likelihood score.
/// Defaults are anomalib's (its backbone is resnet50; any torchvision ResNet exported to ONNX works).
/// </summary>
public sealed class DfmOptions : BackboneDetectorOptions
{
    /// <summary>The backbone layer whose pooled map is modelled. Default layer3.</summary>
    public string Layer { get; set; } = "layer3";

    /// <summary>Average-pooling kernel (and stride) applied to the layer map; 1 disables pooling. Default 4.</summary>
    public int PoolingKernelSize { get; set; } = 4;

    /// <summary>
    /// Share of the variance the PCA keeps (0–1], or, above 1, a component count. Default 0.97. As in anomalib,
    /// the component count is the first index at which the cumulative share reaches this value.
    /// </summary>
    public float VarianceShare { get; set; } = 0.97f;

    /// <summary>
    /// Score: <see cref="DfmScoreType.Fre"/> (feature reconstruction error, with an anomaly map) or
    /// <see cref="DfmScoreType.Nll"/> (negative log-likelihood under a Gaussian, image score only). Default Fre.
    /// </summary>
    public DfmScoreType ScoreType { get; set; } = DfmScoreType.Fre;

    internal override IReadOnlyList<string> BackboneLayers => string.IsNullOrWhiteSpace(Layer) ? [] : [Layer];

    internal DfmTrainingOptions ToTrainingOptions(FitRun? run = null) => new()
    {
        PoolingKernelSize = PoolingKernelSize,
        VarianceShare = VarianceShare,
        ScoreType = ScoreType,
        Device = run?.Device ?? Device,
        CudaDeviceIndex = run?.CudaDeviceIndex ?? 0,
    };

    internal override void ValidateAll(string paramName)
    {
        ValidateBackboneOptions(paramName);
        ToTrainingOptions().Validate(paramName);
    }
}
