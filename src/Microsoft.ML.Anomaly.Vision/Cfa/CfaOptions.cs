using Anomaly.Vision.Training;
using Microsoft.ML.Anomaly.Vision.Common;

namespace Microsoft.ML.Anomaly.Vision;

/// <summary>
/// Options of <see cref="CfaEstimator"/> (CFA, coupled-hypersphere feature adaptation, arXiv 2206.04325).
/// The algorithm's defaults are anomalib's; its backbone default is wide_resnet50_2, but ResNet-18 layers
/// 1–3 are the practical default here and what <see cref="Layers"/> names.
/// </summary>
public sealed class CfaOptions : BackboneDetectorOptions
{
    private static readonly CfaTrainingOptions Defaults = new();

    /// <summary>Backbone layers whose maps the descriptor concatenates; default layer1, layer2, layer3 (torchvision ResNet names).</summary>
    public string[] Layers { get; set; } = ["layer1", "layer2", "layer3"];

    /// <inheritdoc cref="CfaTrainingOptions.GammaC"/>
    public int GammaC { get; set; } = Defaults.GammaC;

    /// <inheritdoc cref="CfaTrainingOptions.GammaD"/>
    public int GammaD { get; set; } = Defaults.GammaD;

    /// <inheritdoc cref="CfaTrainingOptions.NumNearestNeighbors"/>
    public int NumNearestNeighbors { get; set; } = Defaults.NumNearestNeighbors;

    /// <inheritdoc cref="CfaTrainingOptions.NumHardNegativeFeatures"/>
    public int NumHardNegativeFeatures { get; set; } = Defaults.NumHardNegativeFeatures;

    /// <inheritdoc cref="CfaTrainingOptions.Radius"/>
    public float Radius { get; set; } = Defaults.Radius;

    /// <inheritdoc cref="CfaTrainingOptions.Epochs"/>
    public int Epochs { get; set; } = Defaults.Epochs;

    /// <inheritdoc cref="CfaTrainingOptions.LearningRate"/>
    public float LearningRate { get; set; } = Defaults.LearningRate;

    /// <inheritdoc cref="CfaTrainingOptions.WeightDecay"/>
    public float WeightDecay { get; set; } = Defaults.WeightDecay;

    /// <summary>Precision of the training features kept between epochs; <see cref="FeatureStorePrecision.Float16"/> halves their memory.</summary>
    public FeatureStorePrecision FeaturePrecision { get; set; } = FeatureStorePrecision.Float32;

    /// <summary>Bytes of training features kept in memory; the rest go to a temporary file. Default 2 GiB.</summary>
    public long FeatureMemoryLimitBytes { get; set; } = Common.BackboneFeatureExtraction.DefaultMemoryLimitBytes;

    internal override IReadOnlyList<string> BackboneLayers => Layers ?? [];

    internal CfaTrainingOptions ToTrainingOptions(FitRun? run = null) => new()
    {
        GammaC = GammaC,
        GammaD = GammaD,
        NumNearestNeighbors = NumNearestNeighbors,
        NumHardNegativeFeatures = NumHardNegativeFeatures,
        Radius = Radius,
        Epochs = Epochs,
        LearningRate = LearningRate,
        WeightDecay = WeightDecay,
        BatchSize = BatchSize,
        Seed = run?.Seed ?? 0,
        Device = run?.Device ?? Device,
        CudaDeviceIndex = run?.CudaDeviceIndex ?? 0,
    };

    internal override void ValidateAll(string paramName)
    {
        ValidateBackboneOptions(paramName);
        ToTrainingOptions().Validate(paramName);
        if (!Enum.IsDefined(FeaturePrecision))
            throw new ArgumentException($"{nameof(FeaturePrecision)} {FeaturePrecision} is not defined.", paramName);
        if (FeatureMemoryLimitBytes < 0)
            throw new ArgumentException($"{nameof(FeatureMemoryLimitBytes)} must be 0 or more, not {FeatureMemoryLimitBytes}.", paramName);
    }
}
