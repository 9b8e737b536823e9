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
    private static readonly DfmTrainingOptions Defaults = new();

    /// <summary>The backbone layer whose pooled map is modelled. Default layer3.</summary>
    public string Layer { get; set; } = "layer3";

    /// <inheritdoc cref="DfmTrainingOptions.PoolingKernelSize"/>
    public int PoolingKernelSize { get; set; } = Defaults.PoolingKernelSize;

    /// <inheritdoc cref="DfmTrainingOptions.VarianceShare"/>
    public float VarianceShare { get; set; } = Defaults.VarianceShare;

    /// <inheritdoc cref="DfmTrainingOptions.ScoreType"/>
    public DfmScoreType ScoreType { get; set; } = Defaults.ScoreType;

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
