using Anomaly.Vision.Training;

namespace Microsoft.ML.Anomaly.Vision;

/// <summary>
/// Options of <see cref="CflowEstimator"/> (CFlow, conditional normalizing flows, arXiv 2107.12571): one flow
/// per backbone layer models the likelihood of each feature vector given its position. Defaults are anomalib's
/// (its backbone is wide_resnet50_2 with layers 2–4; the same layer names apply to ResNet-18).
/// </summary>
public sealed class CflowOptions : BackboneDetectorOptions
{
    /// <summary>Backbone layers, one flow each. Default layer2, layer3, layer4.</summary>
    public string[] Layers { get; set; } = ["layer2", "layer3", "layer4"];

    /// <summary>Size of the positional-encoding condition vector (a multiple of 4). Default 128.</summary>
    public int ConditionVectorSize { get; set; } = 128;

    /// <summary>Coupling blocks per flow. Default 8.</summary>
    public int CouplingBlocks { get; set; } = 8;

    /// <summary>Clamp of the coupling blocks' soft scaling. Default 1.9.</summary>
    public float ClampAlpha { get; set; } = 1.9f;

    /// <summary>Random orthogonal mixing between blocks instead of a random permutation. Default false.</summary>
    public bool PermuteSoft { get; set; }

    /// <summary>Feature vectors per optimisation step. Default 64.</summary>
    public int FiberBatchSize { get; set; } = 64;

    /// <summary>Adam learning rate. Default 1e-4.</summary>
    public float LearningRate { get; set; } = 1e-4f;

    /// <summary>Training epochs. Default 50.</summary>
    public int Epochs { get; set; } = 50;

    internal override IReadOnlyList<string> BackboneLayers => Layers ?? [];

    internal CflowTrainingOptions ToTrainingOptions() => new()
    {
        ConditionVectorSize = ConditionVectorSize,
        CouplingBlocks = CouplingBlocks,
        ClampAlpha = ClampAlpha,
        PermuteSoft = PermuteSoft,
        FiberBatchSize = FiberBatchSize,
        LearningRate = LearningRate,
        Epochs = Epochs,
        BatchSize = BatchSize,
        Seed = Seed,
        Device = Device,
    };

    internal override void ValidateAll(string paramName)
    {
        ValidateBackboneOptions(paramName);
        ToTrainingOptions().Validate(paramName);
    }
}
