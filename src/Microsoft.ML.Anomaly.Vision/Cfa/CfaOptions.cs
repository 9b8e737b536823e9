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
    /// <summary>Backbone layers whose maps the descriptor concatenates; default layer1, layer2, layer3 (torchvision ResNet names).</summary>
    public string[] Layers { get; set; } = ["layer1", "layer2", "layer3"];

    /// <summary>Memory-bank compression: above 1, k-means reduces the bank to (H·W)/GammaC entries. Default 1.</summary>
    public int GammaC { get; set; } = 1;

    /// <summary>Descriptor compression: the descriptor outputs (sum of layer channels)/GammaD channels. Default 1.</summary>
    public int GammaD { get; set; } = 1;

    /// <summary>Nearest memory-bank entries used by the loss and the score. Default 3.</summary>
    public int NumNearestNeighbors { get; set; } = 3;

    /// <summary>Hard negative features of the loss's repulsion term. Default 3.</summary>
    public int NumHardNegativeFeatures { get; set; } = 3;

    /// <summary>Hypersphere radius of the loss. Default 1e-5.</summary>
    public float Radius { get; set; } = 1e-5f;

    /// <summary>Training epochs. Default 30.</summary>
    public int Epochs { get; set; } = 30;

    /// <summary>AdamW (AMSGrad) learning rate. Default 1e-3.</summary>
    public float LearningRate { get; set; } = 1e-3f;

    /// <summary>AdamW weight decay. Default 5e-4.</summary>
    public float WeightDecay { get; set; } = 5e-4f;

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
